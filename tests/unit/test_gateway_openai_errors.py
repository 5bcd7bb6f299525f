"""Every gateway error answer carries OpenAI's `error` object, read by the `openai` package itself.

A new-user trial with the `openai` package: a wrong key showed "Error code: 401" with `type`
"about:blank" and no `code`; a `temperature` of 5 showed "Error code: 422" and no field.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from fakes import FakeDapr
from gateway.api_keys import ApiKeys, key_digest
from gateway.app import create_app
from gateway.chat import ChatPipeline, PipelineSettings
from gateway.limits import Limits
from gateway.openai_errors import MAX_PROBLEM_BYTES, OpenAIErrorMiddleware, with_error
from gateway.settings import GatewaySettings
from gateway.usage import UsageLedger
from genai_platform.contracts.openai import error_of_problem, openai_param

SETTINGS = GatewaySettings(APP_ID="gateway", APP_PORT=1)
CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}


def _client(keys: str = "k", tokens_per_day: int = 10**9) -> tuple[TestClient, FakeDapr]:
    dapr = FakeDapr(app_id="gateway")
    app = create_app(SETTINGS)
    app.state.settings = SETTINGS
    app.state.sidecar = dapr.sidecar("gateway")
    dapr.secrets[SETTINGS.api_keys_secret] = {SETTINGS.api_keys_secret: keys}
    app.state.api_keys = ApiKeys(app.state.sidecar, SETTINGS.api_keys_secret, ttl_seconds=60)
    app.state.limits = Limits(requests_per_minute=10_000)
    app.state.usage = UsageLedger(app.state.sidecar, tokens_per_day=tokens_per_day)
    app.state.chat = ChatPipeline(app.state.sidecar, PipelineSettings("rag-answer", 2, 5.0, 30.0))
    return TestClient(app), dapr


def _sdk(client: TestClient, key: str = "k") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url="http://testserver/v1", http_client=client, max_retries=0)


def test_a_wrong_key_is_an_authentication_error_with_openais_code() -> None:
    client, _ = _client()
    with pytest.raises(openai.AuthenticationError) as raised:
        _sdk(client, key="wrong").chat.completions.create(**CHAT)
    assert raised.value.code == "invalid_api_key" and raised.value.type == "invalid_request_error"
    assert raised.value.body["message"] == raised.value.response.json()["detail"]


def test_a_key_without_the_scope_names_rfc_6750s_code() -> None:
    client, _ = _client(keys="k=documents:read")
    with pytest.raises(openai.PermissionDeniedError) as raised:
        _sdk(client).embeddings.create(model="m", input="x")
    assert raised.value.code == "insufficient_scope"
    assert raised.value.response.json()["missing_scopes"] == ["chat"]  # the problem's members stay


def test_an_invalid_field_is_named_as_openais_param() -> None:
    client, _ = _client()
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        _sdk(client).chat.completions.create(**CHAT, temperature=5)
    assert raised.value.param == "temperature" and raised.value.type == "invalid_request_error"
    assert "temperature: " in raised.value.body["message"]
    problem = raised.value.response.json()
    assert problem["errors"][0]["location"] == "body.temperature" and problem["status"] == 422


def test_a_size_limit_and_an_unknown_route_carry_it_too() -> None:
    client, _ = _client()
    too_big = client.post("/v1/chat/completions", content=b"x" * (SETTINGS.max_model_body_bytes + 1))
    assert too_big.status_code == 413 and too_big.json()["error"]["type"] == "invalid_request_error"
    assert int(too_big.headers["content-length"]) == len(too_big.content)
    unknown = client.get("/v1/nothing-here", headers={"Authorization": "Bearer k"})
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == unknown.json()["detail"]


def test_an_apps_own_code_and_error_are_kept() -> None:
    client, dapr = _client()
    problem = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "model 'x' is not served here"}
    dapr.answer(
        "features",
        "v1/embeddings",
        httpx.Response(
            404, json={**problem, "code": "model_not_found"}, headers={"content-type": "application/problem+json"}
        ),
    )
    with pytest.raises(openai.NotFoundError) as raised:
        _sdk(client).embeddings.create(model="x", input="hello")
    assert raised.value.code == "model_not_found" and raised.value.body["message"] == problem["detail"]


def test_a_spent_quota_is_openais_insufficient_quota() -> None:
    import asyncio  # noqa: PLC0415

    client, dapr = _client(tokens_per_day=100)
    asyncio.run(UsageLedger(dapr.sidecar(), 100).spend(key_digest("k"), 100))  # key k's usage account
    with pytest.raises(openai.RateLimitError) as raised:
        _sdk(client).chat.completions.create(**CHAT)
    assert raised.value.code == "insufficient_quota" and raised.value.type == "insufficient_quota"
    assert int(raised.value.response.headers["retry-after"]) > 0


@pytest.mark.parametrize(
    ("location", "param"),
    [
        ("body.temperature", "temperature"),
        ("body.messages.0.role", "messages[0].role"),
        ("body.input.1", "input[1]"),
        ("query.limit", "limit"),
        ("body", ""),  # the body as a whole: no parameter (error_of_problem gives null)
        ("body.messages.0.content.str", "messages[0].content"),  # pydantic's union members left out
        (
            "body.messages.0.content.list[function-after[_text_parts_carry_text(), TextPart]].0.text",
            "messages[0].content[0].text",
        ),
        ("body.stop.list[str]", "stop"),
        ("", ""),
    ],
)
def test_a_location_becomes_openais_param(location: str, param: str) -> None:
    assert openai_param(location) == param


def test_the_error_object_of_a_problem() -> None:
    many = [{"location": f"body.f{i}", "message": "bad"} for i in range(5)]
    error = error_of_problem({"status": 422, "detail": "The request is not valid.", "errors": many})
    assert error == {
        "message": "The request is not valid: f0: bad; f1: bad; f2: bad.",
        "type": "invalid_request_error",
        "param": "f0",
        "code": None,
    }
    # A detail that already quotes its error does not say it twice (a new-user trial: prompts' render 422).
    quoted = {"status": 422, "detail": "lang: None is not of type 'string'.", "errors": [
        {"location": "body.variables.lang", "message": "None is not of type 'string'"}]}  # fmt: skip
    assert error_of_problem(quoted)["message"] == "lang: None is not of type 'string'."
    assert error_of_problem(quoted)["param"] == "variables.lang"
    assert error_of_problem({"status": 503, "detail": "down"})["type"] == "server_error"
    assert error_of_problem({"status": 429, "detail": "slow"}) == {
        "message": "slow",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    own: dict[str, Any] = {"message": "m", "type": "t", "param": None, "code": "c"}
    assert error_of_problem({"status": 400, "detail": "d", "error": own}) is own


def test_a_body_that_is_no_json_object_is_left_alone() -> None:
    assert with_error(b"not json") == b"not json"
    assert with_error(b"[1]") == b"[1]"
    kept = json.dumps({"status": 400, "detail": "d", "error": {"message": "m"}}).encode()
    assert with_error(kept) == kept


def _through_middleware(chunks: list[bytes], status: int, content_type: str, method: str = "GET") -> httpx.Response:
    """An app answering `chunks` (more_body between them), behind OpenAIErrorMiddleware."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return TestClient(OpenAIErrorMiddleware(app)).request(method, "/x")


def test_a_problem_sent_in_pieces_is_read_whole_and_gets_its_error() -> None:
    body = json.dumps({"status": 422, "detail": "bad", "errors": [{"location": "body", "message": "m"}]}).encode()
    answer = _through_middleware([body[:10], body[10:25], body[25:]], 422, "application/problem+json")
    error = {"message": "bad: m.", "type": "invalid_request_error", "param": None, "code": None}
    assert answer.json()["error"] == error
    assert int(answer.headers["content-length"]) == len(answer.content)


def test_a_problem_past_the_limit_and_any_other_answer_pass_as_sent() -> None:
    big = b'{"status": 400, "detail": "' + b"x" * MAX_PROBLEM_BYTES + b'"}'
    pieces = [big[i : i + 4096] for i in range(0, len(big), 4096)]
    assert _through_middleware(pieces, 400, "application/problem+json").content == big
    events = [b"data: 1\n\n", b"data: 2\n\n"]
    assert _through_middleware(events, 200, "text/event-stream").content == b"".join(events)
    plain = _through_middleware([b'{"status": 404}'], 404, "application/json")
    assert plain.json() == {"status": 404}  # not problem+json: not the gateway's to change


def test_a_head_answer_is_left_alone() -> None:
    answer = _through_middleware([b""], 404, "application/problem+json", method="HEAD")
    assert answer.status_code == 404 and "error" not in answer.text


def test_a_forwarded_header_that_is_not_ascii_is_a_422_naming_it_and_the_request_id_goes_on_as_taken() -> None:
    """A new-user trial: `Accept: caf\\xe9` or `X-Request-Id: a\\xffb` was a 500 on every relayed route
    (the HTTP client refuses to send such a value); the id the gateway had replaced went on raw."""
    client, dapr = _client()
    # A fresh streamed answer each time: the gateway relays the app's body as it arrives.
    dapr.answer("registry", "/v1/models", lambda _request: httpx.Response(200, stream=httpx.ByteStream(b"{}")))
    key = {"Authorization": "Bearer k"}
    refused = client.get("/v1/registry/models", headers={**key, "accept": b"caf\xe9"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["location"] == "header.accept"
    assert refused.json()["error"]["param"] == "accept"
    relayed = client.get("/v1/registry/models", headers={**key, "x-request-id": b"a\xffb"})
    assert relayed.status_code == 200
    fresh = relayed.headers["x-request-id"]
    assert fresh != "a\xffb" and dapr.requests[-1].headers["x-request-id"] == fresh
    plain = client.get("/v1/registry/models", headers={**key, "x-request-id": "trial-1"})
    assert plain.headers["x-request-id"] == "trial-1" == dapr.requests[-1].headers["x-request-id"]
