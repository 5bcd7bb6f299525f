"""Work a service finishes once at start, in the background, before it calls itself ready.

The registry registers its base model and prompts seeds the RAG prompt this way: the work waits
for the sidecar, is retried with backoff (0.5 s doubling to 10 s) while it fails, and `/readyz`
names it until it is done. Errors listed as `fatal` (a missing file) stop the retries and stay
in `/readyz`'s reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from genai_platform.dapr import Sidecar

log = logging.getLogger(__name__)


class StartupWork:
    """One piece of start-up work; `pending` is the readiness reason while it is not done (None after)."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        *,
        fatal: tuple[type[Exception], ...] = (),
        max_delay_s: float = 10.0,
    ) -> None:
        self.name = name
        self.work = work
        self.fatal = fatal
        self.max_delay_s = max_delay_s
        self.pending: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, sidecar: Sidecar) -> None:
        """Run the work in the background once `sidecar` is ready (call from a lifespan)."""
        self.pending = self.name
        self._task = asyncio.create_task(self._run(sidecar))

    async def stop(self) -> None:
        """Cancel the work if it is still running (call when the lifespan ends)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, sidecar: Sidecar) -> None:
        delay = 0.5
        while True:
            try:
                if await sidecar.is_ready():
                    await self.work()
                    self.pending = None
                    return
            except self.fatal as error:
                log.error("%s failed: %s", self.name, error)
                self.pending = f"{self.name} failed: {error}"
                return
            except Exception:
                log.exception("%s failed; retrying", self.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay_s)


async def startup_done(app: FastAPI) -> str | None:
    """A readiness check (genai_platform.service): the reason while `app.state.startup` is not done."""
    work: StartupWork | None = getattr(app.state, "startup", None)
    return work.pending if work is not None else None
