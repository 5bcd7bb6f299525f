"""The gateway's Coalescer: calls made while one is in flight go together in the next, each caller
gets its own item's result, failures reach every caller of that call, a caller that left is
left out."""

from __future__ import annotations

import asyncio

import pytest

from gateway.batching import Coalescer


class Doubler:
    """A `send` that answers each item doubled, after `gate` opens; it records every call's items."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.called = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        self.called.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [2 * item for item in items]


def test_callers_of_one_round_share_a_call_and_those_arriving_meanwhile_the_next() -> None:
    async def scenario() -> None:
        send = Doubler()
        coalescer = Coalescer(send, max_items=10)
        send.gate.clear()
        first = [asyncio.create_task(coalescer.submit(i)) for i in (1, 2, 3)]
        await send.called.wait()  # the first call is in flight, held at the gate
        later = [asyncio.create_task(coalescer.submit(i)) for i in (4, 5)]
        for _ in range(5):  # turns of the loop in which a second call could have gone out
            await asyncio.sleep(0)
        assert send.calls == [[1, 2, 3]]  # 4 and 5 wait for the call in flight
        send.gate.set()
        assert await asyncio.gather(*first, *later) == [2, 4, 6, 8, 10]
        assert send.calls == [[1, 2, 3], [4, 5]]

    asyncio.run(scenario())


def test_a_lone_caller_is_sent_at_once_and_max_items_splits_a_round() -> None:
    async def scenario() -> None:
        send = Doubler()
        coalescer = Coalescer(send, max_items=2)
        assert await coalescer.submit(7) == 14
        assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
        assert send.calls == [[7], [0, 1], [2, 3], [4]]

    asyncio.run(scenario())


def test_a_failed_call_fails_each_of_its_callers_and_the_next_call_goes_out() -> None:
    async def scenario() -> None:
        send = Doubler()
        coalescer = Coalescer(send, max_items=10)
        send.fail = ConnectionError("guard down")
        results = await asyncio.gather(*(coalescer.submit(i) for i in (1, 2)), return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionError, ConnectionError]
        send.fail = None
        assert await coalescer.submit(3) == 6

    asyncio.run(scenario())


def test_a_caller_that_left_is_not_sent() -> None:
    async def scenario() -> None:
        send = Doubler()
        coalescer = Coalescer(send, max_items=10)
        send.gate.clear()
        held = asyncio.create_task(coalescer.submit(1))
        await send.called.wait()
        leaving, staying = asyncio.create_task(coalescer.submit(2)), asyncio.create_task(coalescer.submit(3))
        await asyncio.sleep(0)
        leaving.cancel()
        send.gate.set()
        assert await held == 2 and await staying == 6
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert send.calls == [[1], [3]]

    asyncio.run(scenario())


def test_a_result_count_that_does_not_match_fails_the_callers_instead_of_hanging_them() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    async def scenario() -> None:
        coalescer = Coalescer(short, max_items=10)
        results = await asyncio.gather(*(coalescer.submit(i) for i in (1, 2)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) and "1 results for 2 items" in str(r) for r in results)

    asyncio.run(scenario())
