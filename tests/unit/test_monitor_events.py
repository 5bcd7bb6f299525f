"""The monitor's event log: idempotent on the CloudEvent id, poison payloads retried."""

from genai_platform.events import CloudEvent, Delivery
from monitor.events import EventLog


def event(event_id: str, data: object, topic: str = "model.promoted") -> CloudEvent:
    return CloudEvent(id=event_id, topic=topic, type="com.dapr.event.sent", source="registry", data=data)


def test_a_redelivered_event_is_recorded_once() -> None:
    log = EventLog(capacity=10)
    assert log.receive(event("e1", {"model": "m", "version": 2})) is Delivery.SUCCESS
    assert log.receive(event("e1", {"model": "m", "version": 2})) is Delivery.SUCCESS
    assert [e.id for e in log.recent] == ["e1"]


def test_a_payload_no_consumer_can_read_is_retried_and_counted() -> None:
    log = EventLog(capacity=10)
    assert log.receive(event("bad", "not an object")) is Delivery.RETRY
    assert log.receive(event("bad", "not an object")) is Delivery.RETRY
    assert list(log.recent) == []
    log.receive_dead_letter(event("bad", "not an object"))
    assert [(e.id, e.attempts) for e in log.dead_letters] == [("bad", 2)]


def test_memory_is_bounded() -> None:
    log = EventLog(capacity=10)
    for n in range(100):
        log.receive(event(f"e{n}", {"n": n}))
    assert len(log.recent) == 10
    assert log.recent[-1].id == "e99"
