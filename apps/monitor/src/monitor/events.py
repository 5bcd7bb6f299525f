"""The monitor's record of the platform's events: recent deliveries and dead letters."""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from genai_platform.events import CloudEvent, Delivery


@dataclass(frozen=True)
class SeenEvent:
    id: str
    topic: str
    type: str
    source: str
    received_at: str
    data: Any
    attempts: int = 1


@dataclass
class EventLog:
    """Bounded memory of what crossed the bus; idempotent on the CloudEvent id."""

    capacity: int
    recent: deque[SeenEvent] = field(init=False)
    dead_letters: deque[SeenEvent] = field(init=False)
    _seen_ids: OrderedDict[str, None] = field(init=False, default_factory=OrderedDict)
    _attempts: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.capacity)
        self.dead_letters = deque(maxlen=self.capacity)

    def receive(self, event: CloudEvent) -> Delivery:
        """Record one delivery. A payload that is not a JSON object cannot be read by any
        consumer of the platform: it is retried per the resiliency policy, then Dapr parks it
        in the dead-letter topic."""
        self._attempts[event.id] += 1
        if not isinstance(event.data, dict):
            return Delivery.RETRY
        if event.id in self._seen_ids:  # a redelivery: already recorded
            return Delivery.SUCCESS
        self._remember(event.id)
        self.recent.append(self._seen(event))
        return Delivery.SUCCESS

    def receive_dead_letter(self, event: CloudEvent) -> Delivery:
        if any(letter.id == event.id for letter in self.dead_letters):
            return Delivery.SUCCESS
        self.dead_letters.append(self._seen(event))
        return Delivery.SUCCESS

    def _seen(self, event: CloudEvent) -> SeenEvent:
        return SeenEvent(
            id=event.id,
            topic=event.topic,
            type=event.type,
            source=event.source,
            received_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            data=event.data,
            attempts=self._attempts[event.id],
        )

    def _remember(self, event_id: str) -> None:
        self._seen_ids[event_id] = None
        while len(self._seen_ids) > self.capacity * 4:
            oldest, _ = self._seen_ids.popitem(last=False)
            self._attempts.pop(oldest, None)
