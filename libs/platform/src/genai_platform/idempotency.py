"""Remember which events a subscriber has handled, in Dapr state, so a redelivery is a no-op."""

from __future__ import annotations

from genai_platform.dapr import Sidecar


class EventLedger:
    """The ids of the CloudEvents this app has finished handling.

    Record an id only after the event's effects are stored: a crash in between means the event
    is handled again, so the handling itself must also be idempotent (it is the ledger that makes
    the common redelivery cheap, not the ledger that makes it safe). Entries expire after `ttl_s`
    on stores with TTLs, which must exceed the broker's redelivery window.
    """

    def __init__(self, sidecar: Sidecar, consumer: str, *, ttl_s: int = 7 * 24 * 3600) -> None:
        self._sidecar = sidecar
        self._consumer = consumer
        self._ttl_s = ttl_s

    def key(self, event_id: str) -> str:
        return f"handled-event:{self._consumer}:{event_id}"

    async def handled(self, event_id: str) -> bool:
        return await self._sidecar.get_state(self.key(event_id)) is not None

    async def record(self, event_id: str) -> None:
        await self._sidecar.save_states([(self.key(event_id), 1)], metadata={"ttlInSeconds": str(self._ttl_s)})
