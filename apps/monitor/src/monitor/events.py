"""The monitor's record of the platform's events: recent deliveries and dead letters."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from genai_platform.events import CloudEvent, Delivery
from genai_platform.idempotency import SeenEvents


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
    """Bounded memory of what crossed the bus.

    `seen` holds the ids recorded (the subscriptions in monitor.app answer a redelivery from it
    without calling `receive`); attempts are counted per id until the event is recorded or
    dead-lettered, for at most `capacity * 4` ids.
    """

    capacity: int
    recent: deque[SeenEvent] = field(init=False)
    dead_letters: deque[SeenEvent] = field(init=False)
    seen: SeenEvents = field(init=False)
    _attempts: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.capacity)
        self.dead_letters = deque(maxlen=self.capacity)
        self.seen = SeenEvents(self.capacity * 4)

    def receive(self, event: CloudEvent) -> Delivery:
        """Record one delivery. A payload that is not a JSON object cannot be read by any
        consumer of the platform: it is retried per the resiliency policy, then Dapr parks it
        in the dead-letter topic."""
        self._count(event.id)
        if not isinstance(event.data, dict):
            return Delivery.RETRY
        self.recent.append(self._seen(event))
        self._attempts.pop(event.id, None)
        return Delivery.SUCCESS

    def receive_dead_letter(self, event: CloudEvent) -> Delivery:
        if any(letter.id == event.id for letter in self.dead_letters):
            return Delivery.SUCCESS
        self.dead_letters.append(self._seen(event))
        self._attempts.pop(event.id, None)
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

    def _count(self, event_id: str) -> None:
        self._attempts[event_id] += 1
        while len(self._attempts) > self.capacity * 4:  # a flood of poison ids stays bounded
            self._attempts.pop(next(iter(self._attempts)))
