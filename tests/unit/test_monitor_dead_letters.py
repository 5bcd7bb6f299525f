"""Dead letters: a replay goes to the letter's own topic and forgets it; a discard forgets it; both are audited."""

import asyncio
import logging

import pytest
from prometheus_client import generate_latest

from genai_platform.events import CloudEvent
from monitor.dead_letters import DeadLetterMissing, NotReplayable, discard, export_gauge, list_letters, replay
from monitor.events import EventLog


class Published:
    """What a replay hands to the sidecar's publish (topic, data), kept to look at."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    async def publish(self, topic: str, data: object) -> None:
        self.calls.append((topic, data))


def log_with(*letters: tuple[str, str]) -> EventLog:
    log = EventLog(capacity=10)
    for letter_id, topic in letters:
        log.receive_dead_letter(CloudEvent(id=letter_id, topic=topic, data={"n": letter_id}))
    return log


def test_a_replay_publishes_on_the_original_topic_forgets_the_letter_and_is_audited(caplog) -> None:
    log = log_with(("a", "chunks.indexed"), ("b", "documents.ingested"))
    published = Published()
    with caplog.at_level(logging.INFO, logger="monitor.audit"):
        done = asyncio.run(replay(log, "a", published, request_id="req-1"))
    assert (done.topic, done.action) == ("chunks.indexed", "replayed")
    assert published.calls == [("chunks.indexed", {"n": "a"})]
    assert [letter.id for letter in list_letters(log)] == ["b"]
    (line,) = caplog.records
    assert (line.action, line.event_id, line.topic, line.by) == ("replay", "a", "chunks.indexed", "req-1")


def test_a_letter_of_no_platform_topic_is_not_replayed_and_stays() -> None:
    log = log_with(("c", "deadletter"), ("d", "no.such.topic"))
    for letter_id in ("c", "d"):
        with pytest.raises(NotReplayable):
            asyncio.run(replay(log, letter_id, Published()))
    assert len(list_letters(log)) == 2


def test_discard_forgets_and_an_unknown_id_is_missing_and_the_gauge_counts_by_topic() -> None:
    log = log_with(("e", "model.promoted"), ("f", "model.promoted"), ("g", "prompt.updated"))
    export_gauge(log)
    assert discard(log, "e").action == "discarded"
    with pytest.raises(DeadLetterMissing):
        discard(log, "e")
    text = generate_latest().decode()
    assert 'monitor_dead_letters{topic="model.promoted"} 1.0' in text
    assert 'monitor_dead_letters{topic="prompt.updated"} 1.0' in text
