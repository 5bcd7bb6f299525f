"""Per-key usage in the state store (gateway.usage): counts shared by replicas, kept over restarts,
no increment lost to a race, and the token quota checked against the shared count.

Each `UsageLedger` stands for one gateway replica; they share one fake sidecar's store, whose
ETags behave as Redis's do (tests/fakes.py, pinned against the real store by
tests/state_contract.py). The same through real gateways and daprd: tests/integration/test_permissions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest
from test_gateway_output_stream import BrokenStream
from test_gateway_pipeline import text_completion

from fakes import FakeDapr
from gateway.api_keys import key_digest
from gateway.usage import PREFIX, UsageLedger, usage_key, usage_of
from genai_platform.errors import Problem
from stream_guard import guard_stream_steps


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_two_replicas_and_a_restart_share_one_count() -> None:
    dapr = FakeDapr()

    async def scenario() -> tuple[int, int]:
        first, second = UsageLedger(dapr.sidecar(), 1000), UsageLedger(dapr.sidecar(), 1000)
        await first.admit("k")
        await second.admit("k")
        await first.spend("k", 30)
        await second.spend("k", 12)
        restarted = UsageLedger(dapr.sidecar(), 1000)
        record = await restarted.read("k")
        return record.requests, record.tokens

    assert asyncio.run(scenario()) == (2, 42)


def test_concurrent_requests_of_one_key_lose_no_increment() -> None:
    dapr = FakeDapr()

    async def scenario() -> tuple[int, int]:
        replicas = [UsageLedger(dapr.sidecar(), 10**9) for _ in range(3)]
        await asyncio.gather(*(replicas[i % 3].admit("k") for i in range(30)))
        await asyncio.gather(*(replicas[i % 3].spend("k", 5) for i in range(12)))
        record = await replicas[0].read("k")
        return record.requests, record.tokens

    assert asyncio.run(scenario()) == (30, 60)


def test_a_spent_quota_refuses_every_replica_until_the_window_turns() -> None:
    dapr, clock = FakeDapr(), Clock()

    async def scenario() -> None:
        first = UsageLedger(dapr.sidecar(), 100, wall=clock)
        second = UsageLedger(dapr.sidecar(), 100, wall=clock)
        await first.admit("k")
        clock.now += 3600
        await first.spend("k", 100)
        with pytest.raises(Problem) as refused:
            await second.admit("k")  # the other replica sees the spent quota
        assert refused.value.status == 429 and "100 tokens" in refused.value.detail
        assert int(refused.value.headers["Retry-After"]) == 86400 - 3600
        await second.admit("other")  # another key has its own quota
        clock.now += 86400 - 3600
        await second.admit("k")  # the window turned
        assert (await first.read("k")).tokens == 0

    asyncio.run(scenario())


def test_the_usage_answer_and_the_stored_record_never_hold_the_key() -> None:
    dapr, clock = FakeDapr(), Clock()
    ACCOUNT = key_digest("gk-secret")  # noqa: N806 (what the gateway counts the key's usage under)

    async def scenario() -> dict:
        ledger = UsageLedger(dapr.sidecar(), 500, wall=clock)
        assert (await usage_of(ledger, ACCOUNT, None, 60)).window_resets_in_seconds == 86400  # nothing used yet
        await ledger.admit(ACCOUNT)
        await ledger.spend(ACCOUNT, 40)
        clock.now += 100
        return (await usage_of(ledger, ACCOUNT, None, 60)).model_dump()

    assert asyncio.run(scenario()) == {
        "project": None,
        "requests": 1,
        "requests_per_minute": 60,
        "tokens_used": 40,
        "tokens_per_day": 500,
        "window_resets_in_seconds": 86300.0,
    }
    assert list(dapr.state) == [PREFIX + ACCOUNT] == [usage_key(ACCOUNT)]
    assert "gk-secret" not in str(dapr.state)


def test_a_replicas_concurrent_requests_of_one_key_share_one_write() -> None:
    dapr = FakeDapr()

    async def scenario() -> int:
        ledger = UsageLedger(dapr.sidecar(), 10**9)
        await asyncio.gather(*(ledger.admit("k") for _ in range(8)))
        return (await ledger.read("k")).requests

    assert asyncio.run(scenario()) == 8
    # One write for the eight, not eight writes racing for the record's ETag.
    writes = [r for r in dapr.requests if r.method == "POST" and r.url.path.startswith("/v1.0/state/")]
    assert len(writes) == 1


# --- the generation routes count the request while their input rails run ------------------------


def _gateway(dapr: FakeDapr, tokens_per_day: int) -> Any:
    """The gateway app over the fake sidecar, one key `k` holding every scope."""
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from gateway.api_keys import ApiKeys  # noqa: PLC0415
    from gateway.app import create_app  # noqa: PLC0415
    from gateway.chat import ChatPipeline, PipelineSettings  # noqa: PLC0415
    from gateway.limits import Limits  # noqa: PLC0415
    from gateway.settings import GatewaySettings  # noqa: PLC0415

    settings = GatewaySettings(APP_ID="gateway", APP_PORT=1)
    app = create_app(settings)
    app.state.settings = settings
    app.state.sidecar = dapr.sidecar("gateway")
    dapr.secrets[settings.api_keys_secret] = {settings.api_keys_secret: "k"}
    app.state.api_keys = ApiKeys(app.state.sidecar, settings.api_keys_secret, ttl_seconds=60)
    app.state.limits = Limits(requests_per_minute=10_000)
    app.state.usage = UsageLedger(app.state.sidecar, tokens_per_day=tokens_per_day)
    app.state.chat = ChatPipeline(app.state.sidecar, PipelineSettings("rag-answer", 2, 5.0, 30.0))
    return TestClient(app)


CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}
# What the gateway counts key "k"'s usage under (it has no project): its digest.
K = key_digest("k")
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "smollm2",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_key_over_its_quota_gets_a_429_whatever_it_sent_and_inference_sees_nothing(path: str) -> None:
    dapr = FakeDapr(app_id="gateway")
    dapr.answer("guard", "v1/guard/input", {"allowed": True, "text": "Hi", "messages": CHAT["messages"]})
    dapr.answer("inference", "v1/chat/completions", ANSWER)
    client = _gateway(dapr, tokens_per_day=5)
    headers = {"Authorization": "Bearer k"}
    body = CHAT if path.endswith("chat/completions") else {"model": "smollm2", "prompt": "Hi"}

    async def spend() -> None:
        await UsageLedger(dapr.sidecar(), 5).spend(K, 5)

    asyncio.run(spend())
    for sent in ({"json": body}, {"content": b"{not json"}, {"json": {"messages": []}}):
        refused = client.post(path, headers=headers, **sent)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "quota" in refused.json()["detail"] and int(refused.headers["retry-after"]) > 0
    assert not [call for call in dapr.invocations if call.app_id == "inference"]
    assert asyncio.run(UsageLedger(dapr.sidecar(), 5).read(K)).requests == 3  # each one counted
    # A route that spends no model tokens still answers: the key can read its own usage.
    usage = client.get("/v1/usage", headers=headers)
    assert usage.status_code == 200 and usage.json()["tokens_used"] == 5 and usage.json()["requests"] == 4


def test_the_keys_of_a_project_share_its_usage_and_quota() -> None:
    dapr = FakeDapr(app_id="gateway")
    dapr.answer("guard", "v1/guard/input", {"allowed": True, "messages": CHAT["messages"]})
    dapr.answer("guard", "v1/guard/output", {"direction": "output", "allowed": True, "text": "Hello."})
    dapr.answer("inference", "v1/chat/completions", ANSWER)
    client = _gateway(dapr, tokens_per_day=100)
    dapr.secrets["gateway-api-keys"] = {"gateway-api-keys": "k,ka=chat project=acme,kb=chat project=acme"}
    a, b = ({"Authorization": f"Bearer {key}"} for key in ("ka", "kb"))
    assert client.post("/v1/chat/completions", headers=a, json=CHAT).status_code == 200
    usage_a, usage_b = client.get("/v1/usage", headers=a).json(), client.get("/v1/usage", headers=b).json()
    assert (
        usage_a["project"] == usage_b["project"] == "acme" and usage_a["tokens_used"] == ANSWER["usage"]["total_tokens"]
    )
    assert usage_b["tokens_used"] == usage_a["tokens_used"] and usage_b["requests"] == usage_a["requests"] + 1 == 3
    assert list(dapr.state) == [usage_key("acme")]  # one record, named by the project, not by a key
    # One key spends the project's quota: the other is refused with it; a key apart is not.
    asyncio.run(UsageLedger(dapr.sidecar(), 100).spend("acme", 100))
    refused = client.post("/v1/chat/completions", headers=b, json=CHAT)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
    assert client.post("/v1/chat/completions", headers={"Authorization": "Bearer k"}, json=CHAT).status_code == 200


def test_a_chat_counts_once_and_a_request_the_rails_refuse_counts_too() -> None:
    dapr = FakeDapr(app_id="gateway")
    dapr.answer("inference", "v1/chat/completions", ANSWER)
    verdicts = iter(
        [
            {"allowed": True, "messages": CHAT["messages"]},
            {"allowed": False, "blocked_by": ["injection"], "messages": CHAT["messages"]},
        ]
    )
    dapr.answer("guard", "v1/guard/input", lambda _request: next(verdicts))
    dapr.answer("guard", "v1/guard/output", {"direction": "output", "allowed": True, "text": "Hello."})
    client = _gateway(dapr, tokens_per_day=1000)
    headers = {"Authorization": "Bearer k"}
    assert client.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 200
    assert client.post("/v1/chat/completions", headers=headers, json=CHAT).status_code == 400
    record = asyncio.run(UsageLedger(dapr.sidecar(), 1000).read(K))
    assert (record.requests, record.tokens) == (2, 5)


# --- a generation holds what it may spend until it has spent it -----------------------------------


def test_a_reservation_holds_the_quota_and_one_answer_may_take_its_last_tokens() -> None:
    dapr, clock = FakeDapr(), Clock()

    async def scenario() -> None:
        ledger = UsageLedger(dapr.sidecar(), 1000, wall=clock)
        await ledger.admit("k")
        first = ledger.reserve("k", max_tokens=590, prompt_tokens=10)
        with pytest.raises(Problem) as refused:
            ledger.reserve("k", max_tokens=500, prompt_tokens=10)  # 600 + 510 > 1000
        # Held tokens stand in the way, not a spent quota: retry in seconds, not at the window's end.
        assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "5"
        # The detail names what is held and the max_tokens that fits now, which does fit.
        assert "hold 600" in refused.value.detail and "max_tokens 390 or fewer" in refused.value.detail
        fitting = ledger.reserve("k", max_tokens=390, prompt_tokens=10)
        assert ledger.reserved("k") == 1000
        await ledger.spend("k", 300, first)
        await ledger.spend("k", 350, fitting)
        assert ledger.reserved("k") == 0 and ledger.reserved("other") == 0
        # 350 left: alone, a request for more than that is admitted, cut to what is left (the last
        # tokens stay usable, and the key does not end an answer past its quota)...
        last = ledger.reserve("k", max_tokens=2048, prompt_tokens=10)
        assert (last.max_tokens, last.tokens) == (340, 350)
        with pytest.raises(Problem) as refused:
            ledger.reserve("k", max_tokens=1, prompt_tokens=10)  # ...but nothing beside it
        assert "ask for fewer max_tokens" in refused.value.detail
        last.release()
        last.release()  # a second release gives nothing back twice
        assert ledger.reserved("k") == 0
        await ledger.spend("k", 400)  # 1050: past the quota
        with pytest.raises(Problem) as refused:
            ledger.reserve("k", max_tokens=1, prompt_tokens=1)
        assert "used up" in refused.value.detail
        clock.now += 86400  # the window turned: the spend it remembers counts no more
        ledger.reserve("k", max_tokens=900, prompt_tokens=100)

    asyncio.run(scenario())


def test_the_prompt_estimate_counts_bytes_and_chat_turns() -> None:
    from gateway.usage import prompt_tokens_estimate  # noqa: PLC0415

    assert prompt_tokens_estimate({"prompt": "x" * 30}) == 10
    assert prompt_tokens_estimate({"prompt": ["é" * 3]}) == 2  # six UTF-8 bytes
    parts = {"role": "user", "content": [{"type": "text", "text": "ab"}, {"type": "text", "text": "cd"}]}
    assert prompt_tokens_estimate({"messages": [{"role": "system", "content": "x" * 9}, parts]}) == 3 + 2 + 2 * 5 + 3
    # Without a system turn the template adds its default one (SmolLM2: 31 tokens for "Hi" in all).
    assert prompt_tokens_estimate({"messages": [{"role": "user", "content": "Hi"}]}) == 1 + 5 + 3 + 22
    assert prompt_tokens_estimate({"messages": [{"role": "developer", "content": "x" * 3}, parts]}) == 1 + 2 + 10 + 3


def _events(total_tokens: int, *, tokens: int = 3) -> bytes:
    """Inference's chat stream as it sends it to the gateway: usage so far on every chunk."""
    envelope = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "smollm2"}
    chunks = [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None} for i in range(tokens)]
    chunks.append({"index": 0, "delta": {}, "finish_reason": "stop"})
    events = []
    for i, choice in enumerate(chunks):
        used = total_tokens - len(chunks) + 1 + i
        events.append({**envelope, "choices": [choice], "usage": {"total_tokens": used}})
    return ("".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n").encode()


def _stream_response(payload: bytes) -> httpx.Response:
    return httpx.Response(200, content=payload, headers={"content-type": "text/event-stream"})


def _platform(inference: Any) -> FakeDapr:
    dapr = FakeDapr(app_id="gateway")
    dapr.answer("guard", "v1/guard/input", {"allowed": True, "messages": CHAT["messages"]})
    dapr.answer("guard", "v1/guard/output", {"direction": "output", "allowed": True, "text": "Hello."})
    dapr.answer("guard", "v1/guard/output/stream/batch", guard_stream_steps)
    if inference is not None:
        dapr.answer("inference", "v1/chat/completions", inference)
    return dapr


# A reservation for CHAT: its max_tokens and the estimate of its prompt, "Hi" in one turn and the
# template's default system turn (1 + 5 + 3 + 22).
PROMPT_ESTIMATE = 31


def test_the_trials_eight_concurrent_streams_stay_within_the_quota() -> None:
    """The new-user trial: eight streams of a key at 560 of 1000 tokens, each using 141, all
    started and took the key to 1,688. Each now holds max_tokens (200) and its prompt's estimate
    (31) from admission: at 500 of 1000 two fit beside each other, the six others are refused."""
    arrived: list[int] = []
    gate: list[asyncio.Event] = []

    async def inference(_request: httpx.Request) -> httpx.Response:
        arrived.append(1)
        await gate[0].wait()
        return _stream_response(_events(141))

    dapr = _platform(inference)
    client = _gateway(dapr, tokens_per_day=1000)
    ledger = client.app.state.usage

    async def scenario() -> tuple[list[httpx.Response], int]:
        gate.append(asyncio.Event())
        await UsageLedger(dapr.sidecar(), 1000).spend(K, 500)
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            body = {**CHAT, "stream": True, "max_tokens": 200}
            posts = [
                asyncio.create_task(http.post("/v1/chat/completions", headers={"Authorization": "Bearer k"}, json=body))
                for _ in range(8)
            ]
            # Polls the event loop until each request reached inference or was answered.
            for _ in range(100_000):
                if len(arrived) + sum(post.done() for post in posts) == 8:
                    break
                await asyncio.sleep(0)
            held = ledger.reserved(K)
            gate[0].set()
            return await asyncio.gather(*posts), held

    answers, held = asyncio.run(scenario())
    assert held == 2 * (200 + PROMPT_ESTIMATE)
    assert sorted(answer.status_code for answer in answers) == [200] * 2 + [429] * 6
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert int(refused.headers["retry-after"]) > 0 and "max_tokens" in refused.json()["detail"]
    spent = asyncio.run(UsageLedger(dapr.sidecar(), 1000).read(K)).tokens
    assert spent == 500 + 2 * 141 and spent <= 1000 + 200  # within one request's max_tokens of the quota
    assert ledger.reserved(K) == 0 and len(arrived) == 2


@pytest.mark.parametrize(
    ("case", "stream", "status", "spent"),
    [
        ("whole answer", False, 200, 5),
        ("streamed answer", True, 200, 7),
        ("the model fails mid-stream", True, 200, 4),
        ("inference down", False, 503, 0),
        ("inference down before the stream's first event", True, 503, 0),
        ("the input rails refuse", False, 400, 0),
        ("the input rails refuse a stream", True, 400, 0),
    ],
)
def test_every_way_a_generation_ends_releases_its_reservation_once(
    case: str, stream: bool, status: int, spent: int
) -> None:
    held_by_inference: list[int] = []

    def inference(_request: httpx.Request) -> httpx.Response | dict[str, Any]:
        held_by_inference.append(client.app.state.usage.reserved(K))
        if case == "whole answer":
            return ANSWER
        if case == "the model fails mid-stream":
            return httpx.Response(200, stream=BrokenStream(_events(7).split(b"\n\n")[0] + b"\n\n"))
        return _stream_response(_events(7))

    dapr = _platform(None if case.startswith("inference down") else inference)
    if case.startswith("the input rails refuse"):
        dapr.answer("guard", "v1/guard/input", {"allowed": False, "blocked_by": ["injection"], "messages": []})
    client = _gateway(dapr, tokens_per_day=10_000)
    answer = client.post("/v1/chat/completions", headers={"Authorization": "Bearer k"}, json={**CHAT, "stream": stream})
    assert answer.status_code == status, answer.text
    if case == "the model fails mid-stream":
        assert '"error"' in answer.text
    # Held while inference ran (max_tokens absent: GATEWAY_MAX_TOKENS), released once, whatever the end.
    assert held_by_inference == ([] if status in (400, 503) else [2048 + PROMPT_ESTIMATE])
    assert client.app.state.usage.reserved(K) == 0
    assert asyncio.run(UsageLedger(dapr.sidecar(), 10_000).read(K)).tokens == spent


@pytest.mark.parametrize("leaves", ["after the first event", "before the headers"])
def test_a_client_leaving_a_stream_releases_its_reservation_and_is_charged(leaves: str) -> None:
    """Driven at the ASGI level, as a server does: the client disconnects while the gateway waits
    to send (`after the first event`), or the send of the headers fails (`before the headers`:
    the stream's body is never iterated; ASGI 2.4 servers raise OSError from `send`)."""
    dapr = _platform(lambda _request: _stream_response(_events(7)))
    client = _gateway(dapr, tokens_per_day=10_000)
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        gone = asyncio.Event()
        request = [{"type": "http.request", "body": json.dumps({**CHAT, "stream": True}).encode(), "more_body": False}]

        async def receive() -> dict[str, Any]:
            if request:
                return request.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.start" and leaves == "before the headers":
                raise OSError("the client closed the connection")
            if message["type"] == "http.response.body":
                gone.set()
                await asyncio.Event().wait()  # the client reads no more

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3" if leaves == "after the first event" else "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"authorization", b"Bearer k"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
        }
        with contextlib.suppress(Exception):
            await client.app(scope, receive, send)

    asyncio.run(scenario())
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert client.app.state.usage.reserved(K) == 0
    # What inference reported when the gateway stopped reading it is charged.
    assert asyncio.run(UsageLedger(dapr.sidecar(), 10_000).read(K)).tokens > 0


def test_a_keys_last_answer_is_cut_to_the_tokens_left() -> None:
    """A new-user trial: a chat without max_tokens (inference's default, 2048) took a key with 100
    tokens left to 2,089 of its 1,000. Alone, it is admitted and cut to what is left."""
    dapr = FakeDapr(app_id="gateway")
    dapr.answer("guard", "v1/guard/input", {"allowed": True, "messages": CHAT["messages"]})
    dapr.answer("guard", "v1/guard/output", {"direction": "output", "allowed": True, "text": "Hello."})
    dapr.answer("inference", "v1/chat/completions", ANSWER)
    client = _gateway(dapr, tokens_per_day=1000)
    asyncio.run(UsageLedger(dapr.sidecar(), 1000).spend(K, 900))
    headers = {"Authorization": "Bearer k"}
    for sent, field in ((CHAT, "max_tokens"), ({**CHAT, "max_completion_tokens": 500}, "max_completion_tokens")):
        assert client.post("/v1/chat/completions", headers=headers, json=sent).status_code == 200
        asked = [call.body for call in dapr.invocations if call.app_id == "inference"][-1]
        left = 1000 - asyncio.run(UsageLedger(dapr.sidecar(), 1000).read(K)).tokens + 5  # before this answer's 5
        assert asked[field] == left - PROMPT_ESTIMATE


def test_a_text_completion_without_max_tokens_reserves_its_default_of_16() -> None:
    """A review: reserving 2048 for it refused a key's second completion and, cut to the tokens
    left, made its last one longer than the 16 tokens inference gives it by default."""
    dapr = FakeDapr(app_id="gateway")
    dapr.answer("guard", "v1/guard/input", {"direction": "input", "allowed": True, "text": "Hi"})
    dapr.answer("guard", "v1/guard/output", {"direction": "output", "allowed": True, "text": " there"})
    dapr.answer("inference", "v1/completions", text_completion)
    client = _gateway(dapr, tokens_per_day=1000)
    asyncio.run(UsageLedger(dapr.sidecar(), 1000).spend(K, 960))  # 40 left: 16 and the prompt fit
    answer = client.post("/v1/completions", headers={"Authorization": "Bearer k"}, json={"model": "m", "prompt": "Hi"})
    assert answer.status_code == 200, answer.text
    [asked] = [call.body for call in dapr.invocations if call.app_id == "inference"]
    assert "max_tokens" not in asked  # not cut, and not raised to the tokens left
