"""Seen-event ids (in memory and in Dapr state) against the fake sidecar (bulk reads: tests/state_contract.py)."""

import asyncio

from fakes import FakeDapr
from genai_platform.idempotency import SeenEvents


def test_an_event_is_handled_once_recorded_with_a_ttl() -> None:
    dapr = FakeDapr(app_id="demo")
    ledger = SeenEvents(sidecar=dapr.sidecar(), consumer="features", ttl_s=60)

    async def scenario() -> tuple[bool, bool, bool]:
        before = await ledger.handled("e-1")
        await ledger.record("e-1")
        # A restarted app (empty memory) still knows the id from Dapr state.
        restarted = SeenEvents(sidecar=dapr.sidecar(), consumer="features")
        return before, await ledger.handled("e-1"), await restarted.handled("e-1")

    assert asyncio.run(scenario()) == (False, True, True)
    assert dapr.metadata(ledger.key("e-1")) == {"ttlInSeconds": "60"}


def test_ids_in_memory_are_bounded_oldest_first() -> None:
    seen = SeenEvents(capacity=2)

    async def scenario() -> list[bool]:
        for event_id in ("a", "b", "c"):
            await seen.record(event_id)
        return [await seen.handled(event_id) for event_id in ("a", "b", "c")]

    assert asyncio.run(scenario()) == [False, True, True]
    assert len(seen) == 2
