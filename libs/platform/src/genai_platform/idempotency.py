"""Remember which events a subscriber has handled, so a redelivery is a no-op.

One class for every subscriber: `SeenEvents` keeps the newest ids in memory and, given a
sidecar, also in Dapr state, so the memory survives a restart (the features index needs that;
a cache that is rebuilt on restart does not).
"""

from __future__ import annotations

from collections import OrderedDict

from genai_platform.dapr import Sidecar


class SeenEvents:
    """The ids of the CloudEvents this app has finished handling.

    In memory, the newest `capacity` ids are kept (least recently recorded or looked up go
    first). With a `sidecar`, every id is also saved in Dapr state under
    `handled-event:<consumer>:<id>`, with a time-to-live of `ttl_s` seconds on stores that have
    TTLs, which must exceed the broker's redelivery window.

    Record an id only after the event's effects are stored: a crash in between means the event
    is handled again, so the handling itself must also be idempotent (the ledger makes the common
    redelivery cheap, not safe). `handled` and `record` raise `DaprError` when the state store
    fails (a transient error: the subscriber answers RETRY).
    """

    def __init__(
        self, capacity: int = 1024, *, sidecar: Sidecar | None = None, consumer: str = "", ttl_s: int = 7 * 24 * 3600
    ) -> None:
        if sidecar is not None and not consumer:
            raise ValueError("ids kept in Dapr state need a consumer name (the app-id)")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._sidecar = sidecar
        self._consumer = consumer
        self._ttl_s = ttl_s

    def key(self, event_id: str) -> str:
        """The state key of one event id (only used with a sidecar)."""
        return f"handled-event:{self._consumer}:{event_id}"

    def __contains__(self, event_id: str) -> bool:
        """Whether the id is in memory (Dapr state is not asked)."""
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    async def handled(self, event_id: str) -> bool:
        """Whether the event was handled: in memory, or else in Dapr state when there is a sidecar."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        if self._sidecar is None or await self._sidecar.get_state(self.key(event_id)) is None:
            return False
        self._remember(event_id)
        return True

    async def record(self, event_id: str) -> None:
        """Mark the event handled (in Dapr state first, when there is a sidecar, then in memory)."""
        if self._sidecar is not None:
            await self._sidecar.save_states([(self.key(event_id), 1)], metadata={"ttlInSeconds": str(self._ttl_s)})
        self._remember(event_id)

    def _remember(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
