"""Dead letters: list them, replay one to the topic it came from, or discard it; both audit-logged.

A dead letter is a message whose delivery retries were spent; the subscriber's sidecar moved
the original CloudEvent to the `deadletter` topic, where the monitor keeps it (monitor/events.py),
its `topic` still the one it was published on. A replay publishes its `data` on that topic again
(as a new CloudEvent, so idempotent subscribers do not skip it); a discard forgets it. Each is
written to the log as an audit line (logger `monitor.audit`, field `audit: true`), which the log
store keeps. The monitor exports how many wait, per topic, as `monitor_dead_letters`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Protocol

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field

from genai_platform.events import Topic
from monitor.events import EventLog, SeenEvent

audit = logging.getLogger("monitor.audit")


class Publisher(Protocol):
    async def publish(self, topic: str, data: Any) -> None: ...


class DeadLetter(BaseModel):
    """A message whose deliveries were given up."""

    id: str = Field(description="The original CloudEvent id.")
    topic: str = Field(description="The topic it was published on, where a replay sends it.")
    type: str
    source: str
    received_at: datetime = Field(description="When the monitor received it from the dead-letter topic.")
    data: Any


class DeadLetterAction(BaseModel):
    """The outcome of a replay or discard."""

    id: str
    topic: str
    action: Literal["replayed", "discarded"]


class DeadLetterMissing(Exception):
    """No dead letter has this id (answered 404)."""


class NotReplayable(Exception):
    """The letter names no topic a replay could go to (answered 409)."""


def _letter(event: SeenEvent) -> DeadLetter:
    return DeadLetter(
        id=event.id,
        topic=event.topic,
        type=event.type,
        source=event.source,
        received_at=event.received_at,
        data=event.data,
    )


def list_letters(log: EventLog, topic: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """Newest first, optionally of one original topic."""
    chosen = [e for e in reversed(log.dead_letters) if topic is None or e.topic == topic]
    return [_letter(e) for e in chosen[:limit]]


def get_letter(log: EventLog, letter_id: str) -> DeadLetter:
    """One dead letter by its CloudEvent id. Raises DeadLetterMissing."""
    return _letter(_take(log, letter_id))


def _take(log: EventLog, letter_id: str) -> SeenEvent:
    found = next((e for e in log.dead_letters if e.id == letter_id), None)
    if found is None:
        raise DeadLetterMissing(letter_id)
    return found


async def replay(
    log: EventLog, letter_id: str, publisher: Publisher, request_id: str | None = None
) -> DeadLetterAction:
    """Publish a dead letter's data on its original topic again, then forget the letter.

    Raises DeadLetterMissing for an unknown id, NotReplayable when its topic is not one of the
    platform's (e.g. the dead-letter topic itself); a failed publish (DaprError) leaves it kept.
    """
    letter = _take(log, letter_id)
    if letter.topic not in {str(t) for t in Topic} or letter.topic == Topic.DEAD_LETTER:
        raise NotReplayable(letter.topic)
    await publisher.publish(letter.topic, letter.data)
    log.dead_letters.remove(letter)
    audit.info(
        "dead letter replayed",
        extra={"audit": True, "action": "replay", "event_id": letter.id, "topic": letter.topic, "by": request_id},
    )
    return DeadLetterAction(id=letter.id, topic=letter.topic, action="replayed")


def discard(log: EventLog, letter_id: str, request_id: str | None = None) -> DeadLetterAction:
    """Forget a dead letter. Raises DeadLetterMissing for an unknown id."""
    letter = _take(log, letter_id)
    log.dead_letters.remove(letter)
    audit.info(
        "dead letter discarded",
        extra={"audit": True, "action": "discard", "event_id": letter.id, "topic": letter.topic, "by": request_id},
    )
    return DeadLetterAction(id=letter.id, topic=letter.topic, action="discarded")


class DeadLetterGauge:
    """`monitor_dead_letters{topic}`: dead letters waiting, read from the event log at each scrape."""

    def __init__(self) -> None:
        self.log: EventLog | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "monitor_dead_letters", "Dead letters waiting for replay or discard, by original topic.", labels=["topic"]
        )
        counts: dict[str, int] = {}
        for letter in self.log.dead_letters if self.log is not None else ():
            counts[letter.topic] = counts.get(letter.topic, 0) + 1
        for topic, count in sorted(counts.items()):
            family.add_metric([topic], count)
        yield family


GAUGE = DeadLetterGauge()
_exported = False


def export_gauge(log: EventLog) -> None:
    """Serve `monitor_dead_letters` from `log` on /metrics (one collector per process: the app
    created last hands it its event log)."""
    global _exported
    GAUGE.log = log
    if not _exported:
        REGISTRY.register(GAUGE)
        _exported = True
