"""Answers that end when their client leaves: a streamed answer whose body is closed when it
ends, however it ends (`ClosingStreamingResponse`), and a whole answer whose work is cancelled
when the client goes before it is ready (`while_connected`).

Starlette's `StreamingResponse` stops iterating its body when the client goes away (ASGI spec
2.3, as uvicorn serves HTTP: it cancels the sending task through an anyio cancel scope), but it
never closes the body. When the cancellation lands while a `send` is awaited, the body
generator is left suspended at its `yield`, and whatever its `finally` blocks or `async with`s
hold (an upstream HTTP stream, a model's generation) stays open until the garbage collector
finalises it, if ever. Starlette 1.10's `responses.py` (`StreamingResponse.__call__`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from genai_platform.errors import Problem

T = TypeVar("T")
# How often a whole answer's wait checks that its client is still there (seconds).
DISCONNECT_POLL_S = 0.25

# How long closing a body may take once the client has gone: its `finally` blocks close
# upstream connections, which takes milliseconds; a body that needs longer is abandoned.
CLOSE_TIMEOUT_S = 5.0


class ClosingStreamingResponse(StreamingResponse):
    """A `StreamingResponse` that closes its body iterator (`aclose()`) in the task that served
    it, as soon as the answer ends: sent whole, failed, or left by its client mid-stream.

    The close runs shielded from the cancellation that ended the stream (else its first await
    would be cancelled too), for at most `CLOSE_TIMEOUT_S` seconds.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body as Starlette does, then close it."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                    await close()


async def while_connected(request: Request, work: Awaitable[T], poll_s: float = DISCONNECT_POLL_S) -> T:
    """`work`'s result, unless the client disconnects first: then `work` is cancelled (and waited
    for, so it lets go of what it holds: an upstream request, a model's slot) and a 499 `Problem`
    is raised (nginx's "client closed request": nobody reads it but the logs and metrics).

    A whole (non-streamed) answer is not cancelled by Starlette when its client leaves; without
    this, a dropped request kept generating to its `max_tokens` (a new-user trial through the
    gateway: four dropped 1,500-token answers held the batch for 75 s).
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise Problem(499, "The client closed the request.", title="Client Closed Request")
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
