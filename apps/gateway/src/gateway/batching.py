"""Calls that arrive while one is in flight go together in the next one.

The gateway relays many streams at once, and their tokens leave inference in the same decode
step: four streams at concurrency 4 asked the guard four times per token, each call crossing two
sidecars, and four requests of one API key raced each other to count themselves in the state
store. A profile of the gateway under that load (bench/chat) found most of its CPU in loopback
socket writes, which cores inference needs too. `Coalescer` turns the calls of one round into
one: the first caller's item is sent once the event loop has run the callers that were ready
beside it, and items submitted while that call is in flight go in the next one. A lone caller
is sent at once, as before; nothing waits on a timer. Used for the guard's stream steps
(gateway.stages.GuardClient) and for usage counts (gateway.usage.UsageLedger).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Sends items through `send` (items → one result per item, in order), at most `max_items`
    per call and one call at a time; each `submit` answers its own item's result.

    `send`'s exception is raised to every caller of that call; a caller cancelled while it waits
    is left out of the next call (or its result is dropped if the call was already made).
    """

    def __init__(self, send: Callable[[list[Item]], Awaitable[list[Result]]], max_items: int) -> None:
        self._send = send
        self._max_items = max_items
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """`item`'s result, sent with whatever else was submitted meanwhile."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._sender is None:
            # The call runs in a task of its own, in the context (trace) of the caller that
            # started it: a batch serves several requests but can be the child of only one.
            self._sender = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            # One turn of the loop: callers woken by the same network read submit before the call.
            await asyncio.sleep(0)
            while self._waiting:
                batch = [(item, future) for item, future in self._waiting[: self._max_items] if not future.done()]
                del self._waiting[: self._max_items]
                if batch:
                    await self._call(batch)
        finally:
            # Cancelled (shutdown): nobody is left to send what still waits.
            for _, future in self._waiting:
                future.cancel()
            self._waiting.clear()
            self._sender = None

    async def _call(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # every caller of this call sees the failure as its own
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
