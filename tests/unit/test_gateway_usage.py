"""Per-key usage in the state store (gateway.usage): counts shared by replicas, kept over restarts,
no increment lost to a race, and the token quota checked against the shared count.

Each `UsageLedger` stands for one gateway replica; they share one fake sidecar's store, whose
ETags behave as Redis's do (tests/fakes.py, pinned against the real store by
tests/state_contract.py). The same through real gateways and daprd: tests/integration/test_permissions.py.
"""

from __future__ import annotations

import asyncio

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
