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
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_openapi_document import APPS, app_document
from unicode_cases import Case, cases

from gateway.openapi import GATEWAY, merge_documents
from gateway.routes import schema_app_paths, schema_sources
from genai_platform.text import NOT_UNICODE, json_body_errors, query_errors

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
