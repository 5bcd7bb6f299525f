"""The monitor's event log: idempotent on the CloudEvent id, poison payloads retried."""

import asyncio
from types import SimpleNamespace

from genai_platform.events import CloudEvent, Delivery, Topic
from monitor.app import subscriptions
from monitor.events import EventLog


def event(event_id: str, data: object, topic: str = "model.promoted") -> CloudEvent:
    return CloudEvent(id=event_id, topic=topic, type="com.dapr.event.sent", source="registry", data=data)


def delivered(log: EventLog, event: CloudEvent) -> Delivery:
    """Deliver as the sidecar would, through the monitor's declared subscription of the topic."""
    subscription = next(s for s in subscriptions.declared if s.topic == event.topic)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(event_log=log)))
    return asyncio.run(subscription.deliver(request, event))  # type: ignore[arg-type]


def test_every_topic_is_watched_and_dead_letters_too() -> None:
    declared = subscriptions.declarations("pubsub")
    assert {d["topic"] for d in declared} == {str(topic) for topic in Topic}
    assert all(d["deadLetterTopic"] == "deadletter" for d in declared if d["topic"] != "deadletter")
    assert declared[-1] == {"pubsubname": "pubsub", "topic": "deadletter", "route": "/dead-letters"}


def test_a_redelivered_event_is_recorded_once() -> None:
    log = EventLog(capacity=10)
    assert delivered(log, event("e1", {"model": "m", "version": 2})) is Delivery.SUCCESS
    assert delivered(log, event("e1", {"model": "m", "version": 2})) is Delivery.SUCCESS
    assert [e.id for e in log.recent] == ["e1"]


def test_a_payload_no_consumer_can_read_is_retried_and_counted() -> None:
    log = EventLog(capacity=10)
    assert delivered(log, event("bad", "not an object")) is Delivery.RETRY
    assert delivered(log, event("bad", "not an object")) is Delivery.RETRY
    assert list(log.recent) == []
    log.receive_dead_letter(event("bad", "not an object"))
    assert [(e.id, e.attempts) for e in log.dead_letters] == [("bad", 2)]


def test_memory_is_bounded() -> None:
    log = EventLog(capacity=10)
    for n in range(100):
        log.receive(event(f"e{n}", {"n": n}))
    assert len(log.recent) == 10
    assert log.recent[-1].id == "e99"
