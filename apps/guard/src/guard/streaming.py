"""Streaming output checks: text is released sentence by sentence, each only after its check.

`OutputStream` holds what arrived since the last sentence end; a sentence leaves only once the
output chain has passed (or redacted) it, so a client never sees text ahead of its check. A span
that must be judged whole is held back even across sentence ends: an open markdown link or image
(its URL decides), and a private-key block until its END line. A run without any sentence end is
checked and released once it passes `max_pending` characters, at a space. Where a sentence ends
is the one rule in genai_platform.sentences, which the gateway reads too.

`stream_step` is the same thing without memory, for callers across a network: the caller carries
`pending` from one call to the next (the guard's HTTP route). `guarded` wraps any async source of
chunks, for a caller that has the chain in-process and writes server-sent events.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

import regex

from genai_platform.sentences import last_sentence_end
from guard.chain import Guard, Verdict

_OPEN_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")
_CLUSTER = regex.compile(r"\X")
_LONGEST_CLUSTER = 64  # code points past the cut read to finish the cluster it falls in
MAX_PENDING = 2000


@dataclass(frozen=True, slots=True)
class StreamStep:
    """What one fed chunk let through: checked text the client may see now, what is held back
    until its sentence ends, whether the stream is blocked, and the check that decided."""

    released: str  # checked text the client may see now
    pending: str  # held back, waiting for the end of its sentence
    blocked: bool = False
    verdict: Verdict | None = None  # the check of `released` (None when nothing was checked)

    def to_json(self) -> dict[str, Any]:
        """The step as the guard's stream API answers it: only the failed rails are listed."""
        body: dict[str, Any] = {"released": self.released, "pending": self.pending, "blocked": self.blocked}
        body["blocked_by"] = list(self.verdict.blocked_by) if self.verdict else []
        body["rails"] = [r.to_json() for r in self.verdict.failed] if self.verdict else []
        return body


def release_point(text: str, final: bool = False, max_pending: int = MAX_PENDING) -> int:
    """How much of `text` is complete enough to check now: an index just past a sentence end."""
    if final:
        return len(text)
    cut = last_sentence_end(text)
    if cut == 0 and len(text) > max_pending:
        space = text.rfind(" ", 0, max_pending)
        cut = space + 1 if space > 0 else _cluster_start(text, max_pending)
    return min(cut, _hold_back_start(text[:cut]))


def _cluster_start(text: str, index: int) -> int:
    """The start of the grapheme cluster (UAX #29) holding `index`: a cut there never splits an
    emoji sequence, which the unicode rail would then see as stray joiners and strip."""
    start = 0
    for match in _CLUSTER.finditer(text, 0, min(len(text), index + _LONGEST_CLUSTER)):
        if match.end() > index:
            break
        start = match.end()
    return start or index  # one cluster longer than the limit: cut it rather than wait forever


def _hold_back_start(segment: str) -> int:
    """Where an unfinished construct begins in `segment` (its length when there is none)."""
    start = len(segment)
    key = segment.rfind("-----BEGIN ")
    if key != -1 and _OPEN_PRIVATE_KEY.match(segment, key) and "-----END" not in segment[key:]:
        start = key
    bracket = segment.rfind("[")
    if bracket != -1:
        rest = segment[bracket:]
        link_open = "](" in rest and ")" not in rest[rest.index("](") + 2 :]
        if "]" not in rest or link_open:
            start = min(start, bracket - 1 if bracket > 0 and segment[bracket - 1] == "!" else bracket)
    tag = segment.lower().rfind("<img")
    if tag != -1 and ">" not in segment[tag:]:
        start = min(start, tag)
    return start


def stream_step(guard: Guard, pending: str, chunk: str, final: bool = False) -> StreamStep:
    """Add `chunk` to `pending`; check and release every complete sentence (everything if final)."""
    text = pending + chunk
    cut = release_point(text, final)
    if cut == 0:
        return StreamStep("", text)
    verdict = guard.check_output(text[:cut], streaming=True)
    if not verdict.allowed:
        return StreamStep("", "", blocked=True, verdict=verdict)
    return StreamStep(verdict.text, text[cut:], verdict=verdict)


class OutputStream:
    """One answer's stream: feed chunks, get back what may be shown."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.pending = ""
        self.blocked = False

    def feed(self, chunk: str) -> StreamStep:
        """Add the model's next chunk; answers what is released (complete sentences, checked)."""
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


async def guarded(chunks: AsyncIterable[str], guard: Guard) -> AsyncIterator[StreamStep]:
    """Each step with text to show or a block, from a source of chunks; stops after a block."""
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
