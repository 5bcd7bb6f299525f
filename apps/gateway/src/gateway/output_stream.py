"""Output rails on a streamed answer, checked by the guard as the text arrives.

The guard owns the rule of what may leave (guard.streaming: everything before the shortest tail
an output rail could still judge differently); the gateway keeps no copy of it. It sends the guard
what arrived since its last question and relays what the guard released, with at most one guard
call in flight: text arriving while a check runs is sent with the next one. So each released
piece costs at most one Dapr round trip, and when the model is faster than the guard, several
tokens share one (measured against a round trip per token and a fixed time window in
bench/chat; bench/README.md "Chat pipeline"). Most pieces cost none on the way out: each answer
holds the step a following space would make (`after_space`), and text that arrives beginning
with a space releases that step's checked text at once, its rest going to the guard behind it.

Use it for any generation route (chat and text completions):

    async for step in guarded_stream(texts, pipeline.guard, request_id):
        if step.blocked:       # the rails refused: stop, finish with `content_filter`
            break
        send(step.released)    # checked text, never empty

`texts` is any async iterator of the model's text deltas; an error it raises (the upstream
failed mid-answer) propagates after the checks in flight, and no unchecked text is released.
`texts` is read in a task of its own; closing or cancelling the generator (a client that left:
close it with `contextlib.aclosing`, never leave it to the garbage collector) cancels that task
and waits for it to let go of `texts`, so the caller can close the upstream stream at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import anyio
import httpx

from gateway.stages import GuardClient
from gateway.timing import ServerTiming
from genai_platform.contracts.guard import GuardStreamStep
from genai_platform.contracts.openai import error_of_problem
from genai_platform.errors import Problem

# How long a cancelled reader may take to let go of inference's stream (milliseconds, normally).
READER_CLOSE_S = 5.0


async def guarded_stream(
    texts: AsyncIterable[str],
    guard: GuardClient,
    request_id: str,
    *,
    window_s: float = 0.0,
    timing: ServerTiming | None = None,
) -> AsyncIterator[GuardStreamStep]:
    """The guard's steps over a stream of text deltas: each one that releases text or blocks.

    `window_s` > 0 asks the guard at most once per that many seconds (time batching); 0 asks as
    soon as the previous answer came back. Stops after a block or after the final step. Each guard
    call's time adds to `timing`'s `guard-out`. Raises `Problem` (503) when the guard cannot
    answer, and whatever `texts` raises.
    """
    timing = timing or ServerTiming()
    arrived: list[str] = []
    news = asyncio.Event()
    ended = False
    failure: BaseException | None = None

    async def read() -> None:
        nonlocal ended, failure
        try:
            async for text in texts:
                if text:
                    arrived.append(text)
                    news.set()
        except Exception as error:  # handed to the consumer, which raises it in its own task
            failure = error
        finally:
            ended = True
            news.set()

    reader = asyncio.create_task(read())
    pending, asked_at = "", 0.0
    ahead: GuardStreamStep | None = None  # the last answer's `after_space`
    try:
        while True:
            await news.wait()
            if window_s and not ended:
                await asyncio.sleep(max(0.0, asked_at + window_s - time.perf_counter()))
            news.clear()
            if failure is not None:
                raise failure
            final = ended  # read before taking the text: everything the reader had is in `arrived`
            chunk = "".join(arrived)
            arrived.clear()
            if ahead is not None and chunk.startswith(" "):
                # Checked already, with this very space after it (guard.streaming.after_space).
                yield ahead
                pending, chunk = ahead.pending, chunk[1:]
                ahead = None
            elif not chunk and not final:
                continue
            asked_at = time.perf_counter()
            with timing.stage("guard-out"):
                step = await guard.stream_step(pending, request_id, chunk=chunk, final=final)
            pending, ahead = step.pending, step.after_space
            if step.released or step.blocked:
                yield step
            if step.blocked or final:
                return
    finally:
        # The reader ends before this generator does, its close of inference's stream complete.
        # When the client left, Starlette cancels this task through an anyio cancel scope, which
        # cancels it again at every await; `await reader` forwards each of those cancellations to
        # the reader, and one cut off httpcore's close of the stream mid-way (its shield stops
        # anyio's cancellations, not a task's own): the stream counted as closed, the connection
        # stayed open, and inference never saw its client go. `asyncio.wait` forwards nothing.
        reader.cancel()
        with anyio.move_on_after(READER_CLOSE_S, shield=True):
            await asyncio.wait({reader})


class UpstreamStream:
    """Inference's streamed chunks (OpenAI's `chat.completion.chunk`), read for their text.

    Keeps what the relay needs besides the text: the envelope (`id`, `object`, `created`,
    `model`, `system_fingerprint`), the finish reason and the usage. A failure mid-answer is a `Problem` (502): an
    `error` event from inference, a broken connection, or a stream that ends before a finish
    reason (a killed process) - never a quiet end that passes for a short answer.
    """

    def __init__(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        self._chunks = chunks
        self.envelope: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.first_text_at: float | None = None
        self._first: dict[str, Any] | None = None

    async def start(self) -> dict[str, Any]:
        """Wait for the first chunk (generation has begun); its envelope, for the role delta."""
        self._first = await self._next()
        if self._first is None:
            raise _failed("the model's stream ended before it began")
        return self.envelope

    async def texts(self) -> AsyncIterator[str]:
        """Each text delta of choice 0, in order; raises `Problem` (502) on a failure mid-answer."""
        chunk = self._first
        while chunk is not None:
            for choice in chunk.get("choices") or []:
                self.finish_reason = choice.get("finish_reason") or self.finish_reason
                text = (choice.get("delta") or {}).get("content") or ""
                if text:
                    self.first_text_at = self.first_text_at or time.perf_counter()
                    yield text
            chunk = await self._next()
        if self.finish_reason is None:
            raise _failed("the model's stream ended before its answer did")

    async def _next(self) -> dict[str, Any] | None:
        try:
            chunk = await anext(self._chunks, None)
        except httpx.HTTPError as error:
            raise _failed("the connection to the model broke") from error
        if chunk is None:
            return None
        if "error" in chunk:
            message = (chunk["error"] or {}).get("message") if isinstance(chunk["error"], dict) else None
            raise _failed(f"the model failed: {message or 'no reason given'}")
        if not self.envelope:
            self.envelope = {k: chunk.get(k) for k in ("id", "object", "created", "model", "system_fingerprint")}
        self.usage = chunk.get("usage") or self.usage
        return chunk


def _failed(reason: str) -> Problem:
    return Problem(502, f"The answer broke off: {reason}.", title="Upstream failure")


def error_event(problem: Problem) -> bytes:
    """The server-sent event that ends a stream which failed after its headers were sent: OpenAI's
    `{"error": {"message", "type", "code"}}` (its SDKs raise `APIError` on it), with the
    problem's `status`, `title` and extensions beside."""
    body = problem.body()
    error = {**error_of_problem(body), **{k: v for k, v in body.items() if k not in ("type", "detail", "error")}}
    return f"data: {json.dumps({'error': error})}\n\n".encode()
