"""Per-key usage in the state store (gateway.usage): counts shared by replicas, kept over restarts,
no increment lost to a race, and the token quota checked against the shared count.

Each `UsageLedger` stands for one gateway replica; they share one fake sidecar's store, whose
ETags behave as Redis's do (tests/fakes.py, pinned against the real store by
tests/state_contract.py). The same through real gateways and daprd: tests/integration/test_permissions.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fakes import FakeDapr
from gateway.usage import PREFIX, UsageLedger, usage_key, usage_of
from genai_platform.errors import Problem


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

    async def scenario() -> dict:
        ledger = UsageLedger(dapr.sidecar(), 500, wall=clock)
        assert (await usage_of(ledger, "gk-secret", 60)).window_resets_in_seconds == 86400  # nothing used yet
        await ledger.admit("gk-secret")
        await ledger.spend("gk-secret", 40)
        clock.now += 100
        return (await usage_of(ledger, "gk-secret", 60)).model_dump()

    assert asyncio.run(scenario()) == {
        "requests": 1,
        "requests_per_minute": 60,
        "tokens_used": 40,
        "tokens_per_day": 500,
        "window_resets_in_seconds": 86300.0,
    }
    assert list(dapr.state) == [usage_key("gk-secret")]
    assert usage_key("gk-secret").startswith(PREFIX) and "gk-secret" not in usage_key("gk-secret")
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
        await UsageLedger(dapr.sidecar(), 5).spend("k", 5)

    asyncio.run(spend())
    for sent in ({"json": body}, {"content": b"{not json"}, {"json": {"messages": []}}):
        refused = client.post(path, headers=headers, **sent)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "quota" in refused.json()["detail"] and int(refused.headers["retry-after"]) > 0
    assert not [call for call in dapr.invocations if call.app_id == "inference"]
    assert asyncio.run(UsageLedger(dapr.sidecar(), 5).read("k")).requests == 3  # each one counted
    # A route that spends no model tokens still answers: the key can read its own usage.
    usage = client.get("/v1/usage", headers=headers)
    assert usage.status_code == 200 and usage.json()["tokens_used"] == 5 and usage.json()["requests"] == 4


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
    record = asyncio.run(UsageLedger(dapr.sidecar(), 1000).read("k"))
    assert (record.requests, record.tokens) == (2, 5)
