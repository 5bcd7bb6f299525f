"""A streamed answer whose body is closed when it ends, however it ends.

Starlette's `StreamingResponse` stops iterating its body when the client goes away (ASGI spec
2.3, as uvicorn serves HTTP: it cancels the sending task through an anyio cancel scope), but it
never closes the body. When the cancellation lands while a `send` is awaited, the body
generator is left suspended at its `yield`, and whatever its `finally` blocks or `async with`s
hold (an upstream HTTP stream, a model's generation) stays open until the garbage collector
finalises it, if ever. Starlette 1.10's `responses.py` (`StreamingResponse.__call__`).
"""

from __future__ import annotations

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

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
