"""Text that is not Unicode is a 422 naming where it is, in every service (genai_platform.text).

A new-user trial found `POST /v1/embeddings` with `"x\\ud800y"` a 500 (the tokenizer); the same lone
surrogate in any other string without a length limit (ingestion's `tags`, a prompt's variables, a
guard's policy names, ...) went on to a state save, a Dapr call or a log line. Each app is built in
process (its lifespan, which opens the sidecar and models, never runs): the rule answers before any
route, so no sidecar is needed to see it.
"""

from __future__ import annotations

import importlib
import json
import tracemalloc
from typing import Any

import anyio
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from test_openapi_document import APPS, app_document
from unicode_cases import Case, cases

from gateway.openapi import GATEWAY, merge_documents
from gateway.routes import schema_app_paths, schema_sources
from gateway.validation import json_body
from genai_platform.contracts.documents import MULTIPART_FRAMING_BYTES
from genai_platform.errors import Problem
from genai_platform.service import create_service
from genai_platform.settings import ServiceSettings
from genai_platform.text import MAX_BODY_BYTES, NOT_UNICODE, json_body_errors, query_errors

PROBLEM_JSON = "application/problem+json"


def build(app_id: str) -> FastAPI:
    settings_type = getattr(importlib.import_module(f"{app_id}.settings"), f"{app_id.capitalize()}Settings")
    settings = settings_type.model_validate({"APP_ID": app_id, "APP_PORT": "1"})
    return importlib.import_module(f"{app_id}.app").create_app(settings)


def send(client: TestClient, case: Case) -> Any:
    headers = {} if case.content_type in (None, "multipart/form-data") else {"Content-Type": case.content_type}
    url = case.url + (f"?{case.query}" if case.query else "")
    if case.content_type == "multipart/form-data":
        return client.request(case.method, url, data=case.data, files=case.files)
    return client.request(case.method, url, content=case.content, headers=headers)


def assert_names(answer: Any, location: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert location in [error["location"] for error in answer.json()["errors"]], answer.text


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    documents = {app_id: app_document(app_id) for app_id in APPS}
    apps = {app_id: document for app_id, document in documents.items() if app_id != GATEWAY}
    return merge_documents(documents[GATEWAY], schema_sources(), apps, schema_app_paths())


@pytest.fixture(scope="module")
def gateway() -> TestClient:
    return TestClient(build("gateway"))


def test_every_operation_of_the_gateway_refuses_text_that_is_not_unicode_naming_it(merged, gateway) -> None:
    # Every operation, the ones the platform fuzz leaves out included: nothing reaches a sidecar here.
    sweep = cases(merged)
    assert len({(c.method, c.path) for c in sweep}) >= 25
    failures = []
    for case in sweep:
        answer = send(gateway, case)
        locations = [e["location"] for e in answer.json().get("errors", [])] if answer.status_code == 422 else []
        if case.location not in locations:
            failures.append(f"{case.id}: {answer.status_code} {answer.text[:200]}")
    assert failures == [], "\n".join(failures)


# The inputs a reading of the code and the sweep found reaching a service's own code, each named.
FOUND = {
    "gateway: a chat message (was a 422 naming no field)": (
        "gateway", "POST", "/v1/chat/completions",
        '{"model": "m", "messages": [{"role": "user", "content": "hi \\ud800"}]}', "body.messages.0.content"),
    "gateway: a completion's user (was a 422 naming no field)": (
        "gateway", "POST", "/v1/completions", '{"model": "m", "prompt": "Hi", "user": "\\udfff"}', "body.user"),
    "features: a search's collection (was a 200)": (
        "features", "POST", "/v1/search", '{"query": "tides", "collection": "x\\ud800"}', "body.collection"),
    "features: an embeddings user (was a 200)": (
        "features", "POST", "/v1/embeddings", '{"model": "m", "input": "hi", "user": "\\ud800"}', "body.user"),
    "guard: a key of the JSON schema (was a 200)": (
        "guard", "POST", "/v1/guard/check",
        '{"text": "hi", "json_schema": {"\\udfff": 1}}', "body.json_schema.\\udfff"),
    # Thought a 500 when the document's state is saved: pydantic's JSON parser refused it first, as
    # a 422 naming only `body` ("Invalid JSON: unexpected end of hex escape").
    "ingestion: a tag (was a 422 naming no field)": (
        "ingestion", "POST", "/v1/documents", '{"text": "Tides.", "tags": ["x\\ud800y"]}', "body.tags.0"),
    "features: an embeddings input (the tokenizer's TypeError)": (
        "features", "POST", "/v1/embeddings", '{"model": "m", "input": "x\\ud800y"}', "body.input"),
    "prompts: a variable's value at render": (
        "prompts", "POST", "/v1/prompts/p/render", '{"variables": {"who": "\\udfff"}}', "body.variables.who"),
    "prompts: an object key": (
        "prompts", "POST", "/v1/prompts/p/render", '{"variables": {"\\ud800": "x"}}', "body.variables.\\ud800"),
}  # fmt: skip


@pytest.mark.parametrize("case", FOUND)
def test_a_service_refuses_a_lone_surrogate_naming_the_field(case: str) -> None:
    app_id, method, path, content, location = FOUND[case]
    answer = TestClient(build(app_id)).request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )
    assert_names(answer, location)
    assert answer.json()["errors"][0]["message"] == NOT_UNICODE


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/v1/documents?collection=x%ED%A0%80y", "query.collection"),
        ("/v1/documents?collection=x%FFy", "query.collection"),
        ("/v1/documents/x%FFy", "path.document_id"),
        ("/v1/documents/x%ED%A0%80y", "path.document_id"),
    ],
)
def test_a_url_whose_bytes_are_not_utf8_is_a_422_naming_the_parameter(url: str, location: str) -> None:
    # Starlette reads them as U+FFFD: a different name, silently.
    assert_names(TestClient(build("ingestion")).get(url), location)


@pytest.mark.parametrize(
    ("app_id", "path", "data", "filename", "location"),
    [
        ("ingestion", "/v1/documents", {"title": b"x\xffy"}, "a.txt", "body.title"),
        ("ingestion", "/v1/documents", {"source": b"x\xed\xa0\x80y"}, "a.txt", "body.source"),
        ("ingestion", "/v1/documents", {}, b"x\xff.txt", "body.file.filename"),
        ("training", "/v1/files", {"purpose": b"fine-tune\xff"}, "a.jsonl", "body.purpose"),
    ],
)
def test_a_form_field_whose_bytes_are_not_utf8_is_a_422_naming_it(app_id, path, data, filename, location) -> None:
    # Starlette reads such a field as Latin-1: "x\xffy" was taken as the title "xÿy".
    boundary = "b0undary"
    fields = [(name, None, value) for name, value in data.items()] + [("file", filename, b"Some text.\n")]
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
            + (b'; filename="' + (file.encode() if isinstance(file, str) else file) + b'"' if file else b"")
            + b"\r\n\r\n"
            + value
            + b"\r\n"
            for name, file, value in fields
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert_names(TestClient(build(app_id)).post(path, content=body, headers=headers), location)


def test_valid_text_passes_as_sent() -> None:
    paired = b'{"text": "\\ud83d\\ude00 caf\\u00e9 \\u0000", "tags": ["\\u2028"]}'
    assert json_body_errors(paired) == []
    assert json_body_errors('{"text": "café 😀"}'.encode()) == []
    assert json_body_errors(b'{"text": "\\\\ud800"}') == []  # a backslash and "ud800", not an escape
    assert json_body_errors(b"not json \\ud800") == []  # the route answers that itself
    assert query_errors(b"q=caf%C3%A9+%F0%9F%98%80&flag") == []


def test_every_string_not_unicode_is_found_where_it_is() -> None:
    body = json.dumps({"a": ["ok", {"b": "\udfff"}], "\ud800": 1}).encode("ascii")
    assert json_body_errors(body) == [("body", "a", 1, "b"), ("body", "\\ud800")]
    assert json_body_errors(b'{"text": "x\xffy"}') == [("body", "text")]  # bytes that are not UTF-8
    assert query_errors(b"a=1&b=%ED%A0%80&c%FF=2") == [("query", "b"), ("query", "c\ufffd")]


@pytest.mark.parametrize(
    ("path", "content", "location"),
    [
        ("/chat/answers", b"message=x%ED%A0%80y&csrf_token=t", "body.message"),
        ("/prompts", b"name=p&template=x%FFy&csrf_token=t", "body.template"),
    ],
)
def test_a_ui_form_whose_bytes_are_not_utf8_is_a_422_naming_the_field(path: str, content: bytes, location: str) -> None:
    # A browser sends a UTF-8 page's forms as UTF-8; only a hand-made post has these, and Starlette
    # would have read them as U+FFFD.
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_names(TestClient(build("ui")).post(path, content=content, headers=headers), location)


# --- bodies a route reads as JSON whatever their encoding; bodies the rule holds while it reads ---


def service(**options: Any) -> TestClient:
    """An app built by create_service with routes that answer what they were sent (no sidecar)."""
    router = APIRouter()

    @router.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"keys": [_shown_key(key) for key in body]}

    @router.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        form = await request.form()
        file = form["file"]
        assert not isinstance(file, str)
        size = 0
        while chunk := await file.read(1 << 16):
            size += len(chunk)
        return {"size": size, "title": form.get("title")}

    settings = ServiceSettings.model_validate({"APP_ID": "t", "APP_PORT": "1"})
    return TestClient(create_service(settings, title="t", routers=[router], **options))


def _shown_key(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


# Python's json.loads(bytes), which Starlette's request.json() and FastAPI's body parsing call, detects
# UTF-16 and UTF-32 (RFC 4627's rule) and a UTF-8 byte order mark, and decodes them with surrogatepass.
ENCODINGS = ["utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be", "utf-32", "utf-8-sig"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_json_body_in_utf16_utf32_or_with_a_bom_is_read_as_the_route_reads_it(encoding: str) -> None:
    # UTF-16 of ASCII is valid UTF-8 (NUL bytes) with no surrogate escape the byte search could see,
    # and a BOM made json.loads(str) fail: both passed as sent, and the guard took the key (200).
    escaped = '{"text": "hi", "json_schema": {"\\udfff": 1}}'.encode(encoding)
    guard = TestClient(build("guard"))
    answer = guard.post("/v1/guard/check", content=escaped, headers={"Content-Type": "application/json"})
    assert_names(answer, "body.json_schema.\\udfff")
    # A lone surrogate code unit in the encoding itself, not an escape (UTF-8 cannot carry one).
    if not encoding.startswith("utf-8"):
        raw = '{"ok": "x", "\ud800": 1}'.encode(encoding, "surrogatepass")
        assert json_body_errors(raw) == [("body", "\\ud800")]
        assert_names(service().post("/echo", content=raw, headers={"Content-Type": "application/json"}), "body.\\ud800")
    # The same encoding of Unicode text reaches the route as sent.
    valid = '{"café": 1, "😀": 2}'.encode(encoding)
    assert json_body_errors(valid) == []
    answer = service().post("/echo", content=valid, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"keys": ["café", "😀"]}


def test_a_json_body_the_route_cannot_decode_is_the_routes_to_answer() -> None:
    assert json_body_errors('{"a": 1}'.encode("utf-16-le")[:-1]) == []  # half a code unit
    answer = service().post("/echo", content=b'{"a": 1}\x00', headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["location"] != "body.a"


def test_a_chat_body_sent_as_text_is_still_read_for_text_that_is_not_unicode() -> None:
    # The gateway's chat and completions take their body as JSON whatever its Content-Type says, and
    # the middleware reads only the bodies FastAPI parses as JSON: the gateway's own check stays.
    content = '{"model": "m", "messages": [{"role": "user", "content": "hi \\ud800"}]}'.encode("utf-16")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": content, "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": [(b"content-type", b"text/plain")]}, receive)
    with pytest.raises(Problem) as refused:
        anyio.run(json_body, request, "chat completion request")
    assert refused.value.status == 422
    assert refused.value.extensions["errors"] == [{"location": "body.messages.0.content", "message": NOT_UNICODE}]


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
            + (f'; filename="{filename}"'.encode() if filename else b"")
            + b"\r\n\r\n"
            + value
            + b"\r\n"
            for name, filename, value in fields
        )
        + f"--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def assert_too_large(answer: Any, limit: int) -> None:
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json()["limit_bytes"] == limit, answer.text


def test_a_body_over_the_limit_is_a_413_naming_it_declared_or_counted() -> None:
    client = service(max_body_bytes=4096)
    body = json.dumps({"text": "x" * 5000}).encode()
    headers = {"Content-Type": "application/json"}
    assert_too_large(client.post("/echo", content=body, headers=headers), 4096)
    chunked = client.post("/echo", content=iter([body[:3000], body[3000:]]), headers=headers)
    assert_too_large(chunked, 4096)
    at_limit = json.dumps({"t": "x" * (4096 - 9)}).encode()
    assert len(at_limit) == 4096
    assert client.post("/echo", content=at_limit, headers=headers).status_code == 200
    form, form_headers = multipart([("title", None, b"t"), ("file", "a.txt", b"a" * 5000)])
    assert_too_large(client.post("/upload", content=form, headers=form_headers), 4096)


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read() -> None:
    app = service(max_body_bytes=4096).app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/echo",
        "raw_path": b"/echo", "root_path": "", "query_string": b"", "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2), "headers": [(b"content-type", b"application/json"), (b"content-length", b"4097")],
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["limit_bytes"] == 4096


def test_every_app_holds_in_memory_no_body_larger_than_a_sidecar_delivers() -> None:
    # daprd refuses a body over its maxBodySize (dapr.yaml) before the app sees it: the same figure.
    assert MAX_BODY_BYTES == 16 << 20
    huge = {"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)}
    assert_too_large(service().post("/echo", content=b"{}", headers=huge), MAX_BODY_BYTES)


def test_a_file_is_not_held_in_memory_and_reaches_the_route_whole() -> None:
    # File contents are the route's to judge: the rule reads only names, file names and text fields,
    # and holds a large multipart body on disk, as Starlette holds an uploaded file.
    size = 8 << 20
    body, headers = multipart([("title", None, "café".encode()), ("file", "a.bin", b"\xff" * size)])
    client = service()
    tracemalloc.start()
    try:
        answer = client.post("/upload", content=body, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"size": size, "title": "café"}
    # The body was held whole, and the file copied again to be read (17 MB here); now a spool of 1 MiB.
    assert peak < size / 4, peak


def test_ingestions_limit_on_a_document_answers_before_the_body_is_read() -> None:
    # Ingestion refused an upload over its largest document "before reading it"; the rule must not
    # read it first. Its limit is the document's and the multipart framing's.
    settings = importlib.import_module("ingestion.settings").IngestionSettings.model_validate(
        {"APP_ID": "ingestion", "APP_PORT": "1"}
    )
    limit = settings.max_document_bytes + MULTIPART_FRAMING_BYTES
    client = TestClient(build("ingestion"))
    declared = {"Content-Type": "application/json", "Content-Length": str(limit + 1)}
    assert_too_large(client.post("/v1/documents", content=b"{}", headers=declared), limit)


def test_the_gateways_size_limits_answer_before_the_rule_reads_a_body() -> None:
    gateway = TestClient(build("gateway"))
    limit = importlib.import_module("gateway.settings").GatewaySettings.model_fields["max_body_bytes"].default
    body = json.dumps({"query": "x" * limit}).encode()
    headers = {"Content-Type": "application/json"}
    assert_too_large(gateway.post("/v1/search", content=body, headers=headers), limit)
    assert_too_large(gateway.post("/v1/search", content=iter([body[:1000], body[1000:]]), headers=headers), limit)


def test_the_ui_takes_a_full_upload_form_and_holds_no_other_form_past_a_sidecars_limit() -> None:
    # No sidecar limits what a browser sends the ui: its limit is its Documents form's, UPLOAD_FILES
    # files of UI_MAX_UPLOAD_BYTES (held on disk); a page's other forms are held in memory, so 16 MiB.
    ui = TestClient(build("ui"), raise_server_exceptions=False)  # no lifespan: no session store
    form, headers = multipart([("collection", None, b"c"), ("files", "a.txt", b"x")])
    declared = {**headers, "Content-Length": str(3 * MAX_BODY_BYTES)}
    assert ui.post("/documents/upload", content=form, headers=declared).status_code != 413
    declared = {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(MAX_BODY_BYTES + 1)}
    assert_too_large(ui.post("/chat/answers", content=b"message=hi", headers=declared), MAX_BODY_BYTES)
