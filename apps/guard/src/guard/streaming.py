"""Streaming output checks: text leaves as soon as no output rail could still change it.

Each output rail declares the shortest tail of a text that more text could still turn into (part
of) one of its findings (`unsettled` in each rail module: an unfinished word that may become an
e-mail address, a run of digits and separators that may grow into a phone or card number, an
open markdown link or image, an open private-key block, a phrase of the blocklist half written,
the last grapheme cluster). Everything before the earliest of those tails, cut back to the start
of its word, is checked with the output chain and released; the tail waits for more text. A rail
that declares its tail truthfully therefore sees the streamed answer exactly as the whole one:
the pieces released, joined, are the whole answer's checked text (tests/unit/test_guard_streaming
proves it over any chunking of answers with personal data, secrets and exfiltration links).

Because of that, a step's answer can come before its chunk: `after_space(guard, pending)` is the
step a chunk of one space would make, and a caller holding it may apply it to a chunk that
begins with a space without asking (the rest of the chunk goes with its `pending` next). Cutting
a chunk after its first character is one more chunking, so the pieces are still exactly the
whole answer's checked text; a model's tokens mostly begin with a space, so the text before one
leaves as soon as it arrives instead of a guard round trip later. It is offered only when that
step releases text that no rail found anything in (the usual case): a finding, a block and its
`guard.violation` event wait for the step actually asked for.

This module is the one implementation of that rule. Callers:
- `stream_step(guard, pending, chunk, final)`: without memory, for callers across a network; the
  caller sends back `pending` with the next chunk (the guard's `POST /v1/guard/output/stream`,
  which the gateway calls through Dapr: see gateway.output_stream).
- `OutputStream(guard)`: the same with the memory kept, `feed(chunk)` then `finish()`.
- `guarded_stream(chunks, guard)`: wraps any async source of text for an in-process caller.

A rail that judges a whole answer (`length`, `json_schema`) is listed in `WHOLE_ANSWER_RAILS`;
a rail in the policy that is in neither table stops the guard at import, so adding a rail cannot
silently leave streams unchecked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import regex

from guard.chain import Guard, Verdict
from guard.policy import OutputRails
from guard.rails import blocklist, exfiltration, pii, secrets
from guard.rails import unicode as unicode_rail

_CLUSTER = regex.compile(r"\X")
_LONGEST_CLUSTER = 64  # code points past the cut read to finish the cluster it falls in
# A run without whitespace longer than this (a base64 blob) is released in pieces rather than
# held to its end; the rails' own tails are never cut.
MAX_PENDING = 2000

# Each output rail's streaming tail (see guard.rails: `unsettled`), by its name in the policy.
RAIL_TAILS: dict[str, Callable[[str, OutputRails], int]] = {
    "unicode": lambda text, rails: unicode_rail.unsettled(text),
    "exfiltration": lambda text, rails: exfiltration.unsettled(text),
    "pii": lambda text, rails: pii.unsettled(text, rails.pii.entities),
    "secrets": lambda text, rails: secrets.unsettled(text),
    "blocklist": lambda text, rails: blocklist.unsettled(text, rails.blocklist.terms, rails.blocklist.topics),
}
# Rails that judge a whole answer, never a piece: a streamed answer's length is bounded by its
# request's `max_tokens` at inference; a JSON answer (json_mode / json_schema) is held whole and
# checked at its end.
WHOLE_ANSWER_RAILS = frozenset({"length", "json_schema"})

_undeclared = set(OutputRails.model_fields) - RAIL_TAILS.keys() - WHOLE_ANSWER_RAILS
if _undeclared:
    raise RuntimeError(f"output rails without a streaming tail (guard.streaming.RAIL_TAILS): {sorted(_undeclared)}")


@dataclass(frozen=True, slots=True)
class StreamStep:
    """What one fed chunk let through: checked text the client may see now, what is held back
    until no rail could still change it, whether the stream is blocked, and the check that decided."""

    released: str  # checked text the client may see now
    pending: str  # held back: a tail some rail may still judge differently
    blocked: bool = False
    verdict: Verdict | None = None  # the check of `released` (None when nothing was checked)

    @property
    def clean(self) -> bool:
        """Released text in which no rail found anything (nothing blocked, redacted or logged)."""
        return bool(self.released) and not self.blocked and (self.verdict is None or not self.verdict.failed)

    def to_json(self, after_space: StreamStep | None = None) -> dict[str, Any]:
        """The step as the guard's stream API answers it: only the failed rails are listed; with
        `after_space` (see `after_space`) when given."""
        body: dict[str, Any] = {"released": self.released, "pending": self.pending, "blocked": self.blocked}
        body["blocked_by"] = list(self.verdict.blocked_by) if self.verdict else []
        body["rails"] = [r.to_json() for r in self.verdict.failed] if self.verdict else []
        if after_space is not None:
            body["after_space"] = after_space.to_json()
        return body


def unsettled_start(guard: Guard, text: str) -> int:
    """Where the earliest tail that an enabled output rail may still judge differently starts."""
    rails = guard.policy.output
    starts = (tail(text, rails) for name, tail in RAIL_TAILS.items() if getattr(rails, name).enabled)
    return min(starts, default=len(text))


def release_point(guard: Guard, text: str, final: bool = False, max_pending: int = MAX_PENDING) -> int:
    """How much of `text` may be checked and released now: up to the earliest unsettled tail, cut
    back to the start of its word (so the next piece begins after whitespace, where every rail's
    look-behind reads what it reads at the start of a text). Everything when `final`."""
    if final:
        return len(text)
    cut = len(text)
    while True:
        # The piece before the cut is checked as a text of its own, so it must be settled as one:
        # a cut inside a construct (a tag, a link, a definition) leaves it open there, and the
        # rails then hold back from its start. Each round only moves the cut back.
        settled = unsettled_start(guard, text[:cut])
        word = settled
        while word > 0 and not text[word - 1].isspace():
            word -= 1
        if settled - word > max_pending:
            # A run without whitespace longer than any word: release it up to the tail a rail holds.
            return min(cut, _cluster_start(text, settled))
        if word >= cut:
            return cut
        cut = word


def _cluster_start(text: str, index: int) -> int:
    """The start of the grapheme cluster (UAX #29) holding `index`: a cut there never splits an
    emoji sequence, which the unicode rail would then see as stray joiners and strip."""
    start = 0
    for match in _CLUSTER.finditer(text, max(0, index - _LONGEST_CLUSTER), min(len(text), index + _LONGEST_CLUSTER)):
        if match.end() > index:
            return match.start()
        start = match.end()
    return start


def stream_step(
    guard: Guard,
    pending: str,
    chunk: str,
    final: bool = False,
    *,
    json_schema: dict[str, Any] | None = None,
    json_mode: bool = False,
) -> StreamStep:
    """Add `chunk` to `pending`; check and release what no rail could still change (all if `final`).

    A JSON answer (`json_mode`, or a `json_schema` to validate) is held whole and checked at its
    end with the JSON rail, as a whole answer is. Raises nothing: a refusal is a blocked step.
    """
    text = pending + chunk
    whole_answer = json_mode or json_schema is not None
    cut = len(text) if final else (0 if whole_answer else release_point(guard, text))
    if cut == 0:
        return StreamStep("", text)
    if whole_answer:
        verdict = guard.check_output(text, json_schema=json_schema, json_mode=json_mode)
    else:
        verdict = guard.check_output(text[:cut], streaming=True)
    if not verdict.allowed:
        return StreamStep("", "", blocked=True, verdict=verdict)
    return StreamStep(verdict.text, text[cut:], verdict=verdict)


def after_space(guard: Guard, pending: str) -> StreamStep | None:
    """The step a chunk of one space (" ") would make after `pending`, when it releases clean text
    (`StreamStep.clean`); None otherwise. A caller may apply it to a next chunk that begins with a
    space, then send the chunk's rest with its `pending` (see the module's docstring)."""
    step = stream_step(guard, pending, " ")
    return step if step.clean else None


def step_with_lookahead(
    guard: Guard, pending: str, chunk: str, final: bool = False
) -> tuple[StreamStep, StreamStep | None]:
    """`stream_step` of a plain-text stream, and `after_space` of its pending text unless the step
    ended the stream (final or blocked): one step of the guard's batch route."""
    step = stream_step(guard, pending, chunk, final)
    return step, (None if final or step.blocked else after_space(guard, step.pending))


class OutputStream:
    """One answer's stream: feed chunks, get back what may be shown."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.pending = ""
        self.blocked = False

    def feed(self, chunk: str) -> StreamStep:
        """Add the model's next chunk; answers what is released (checked; maybe empty)."""
        return self._step(chunk, final=False)

    def finish(self) -> StreamStep:
        """The answer is over: check and release what is still held back."""
        return self._step("", final=True)

    def _step(self, chunk: str, final: bool) -> StreamStep:
        if self.blocked:
            return StreamStep("", "", blocked=True)
        step = stream_step(self.guard, self.pending, chunk, final)
        self.pending = step.pending
        self.blocked = step.blocked
        return step


async def guarded_stream(chunks: AsyncIterable[str], guard: Guard) -> AsyncIterator[StreamStep]:
    """The checked steps of a stream of text chunks, for a caller with the guard in-process.

    Yields each step that releases text or blocks (`step.released`, `step.blocked`,
    `step.verdict.blocked_by`) and stops after a block; the source's own errors propagate.
    Use: `async for step in guarded_stream(model_tokens(), guard): send(step.released)`.
    Across the network, the gateway's `gateway.output_stream.guarded_stream` does the same
    through the guard's stream route.
    """
    stream = OutputStream(guard)
    async for chunk in chunks:
        step = stream.feed(chunk)
        if step.released or step.blocked:
            yield step
        if step.blocked:
            return
    step = stream.finish()
    if step.released or step.blocked:
        yield step


def sse_event(data: dict[str, Any], event: str | None = None) -> str:
    """One server-sent event carrying `data` as JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"
