"""The continuous-batching engine on a tiny random Llama: batching is exact, slots are freed,
the queue is bounded, limits are named, retired engines drain."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from inference import batch as kv
from inference.decoding import SamplingParams
from inference.engine import Engine, EngineRetired, Finished, LimitExceeded, QueueFull, TextDelta
from inference.llama import FastLlama, PackedPrefill
from inference.model import LoadedModel

GREEDY = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="session")
def tiny(tiny_llama) -> LoadedModel:
    model, tokenizer = tiny_llama
    return LoadedModel(
        "tiny", "1", "memory", model, tokenizer, torch.device("cpu"), torch.float32, 256, frozenset({2}), 2
    )


def prompts(tiny: LoadedModel) -> list[list[int]]:
    texts = ["Hi", "What is the capital of France?", "Write a long poem about the sea and the sky, please."]
    return [tiny.encode_chat([{"role": "user", "content": t}]) for t in texts]


async def collect(
    engine: Engine, prompt: list[int], params: SamplingParams, delay: float = 0.0
) -> tuple[str, Finished]:
    await asyncio.sleep(delay)
    return await engine.submit(prompt, params).text()


async def alone(tiny: LoadedModel) -> list[tuple[str, Finished]]:
    """Each of `prompts` generated alone (an engine of one slot): what batching must reproduce."""
    engine = Engine(tiny, max_batch_size=1).start()
    try:
        return [await collect(engine, p, GREEDY) for p in prompts(tiny)]
    finally:
        engine.stop()


def test_batched_generation_equals_one_at_a_time(tiny: LoadedModel) -> None:
    async def together() -> list[tuple[str, Finished]]:
        engine = Engine(tiny, max_batch_size=8).start()
        try:
            # Each joins once the previous one has produced text: a batch already decoding,
            # with rows of different lengths.
            tasks = []
            for prompt in prompts(tiny):
                generation = engine.submit(prompt, GREEDY)
                started = asyncio.Event()
                tasks.append(asyncio.create_task(_text_after_first(generation, started)))
                await started.wait()
            return list(await asyncio.gather(*tasks))
        finally:
            engine.stop()

    expected, batched = asyncio.run(alone(tiny)), asyncio.run(together())
    assert batched == expected
    assert all(f.reason == "length" and f.completion_tokens == 12 for _, f in batched)


def test_prompts_arriving_together_get_what_they_get_alone(tiny: LoadedModel) -> None:
    async def together() -> list[tuple[str, Finished]]:
        engine = Engine(tiny, max_batch_size=8).start()
        try:
            # Submitted in one go: they join in one step, prefilled in one packed pass.
            generations = [engine.submit(p, GREEDY) for p in prompts(tiny)]
            return list(await asyncio.gather(*(g.text() for g in generations)))
        finally:
            engine.stop()

    assert asyncio.run(together()) == asyncio.run(alone(tiny))


def test_prompts_joining_a_prefill_at_a_layer_get_what_they_get_alone(tiny: LoadedModel) -> None:
    fast = tiny.forward
    assert isinstance(fast, FastLlama)
    first, *late = prompts(tiny)
    job = fast.start_prefill([first])
    job.step()  # layer 0 of 2 run for the first prompt alone
    catching_up = fast.start_prefill(late)
    catching_up.step()
    job.absorb(catching_up)
    job.step()
    caches, logits = job.result()
    alone_caches, alone_logits = fast.prefill([first, *late])
    torch.testing.assert_close(logits, alone_logits, rtol=1e-5, atol=1e-5)
    for joined, whole in zip(caches, alone_caches, strict=True):
        for layer, reference in zip(joined, whole, strict=True):
            torch.testing.assert_close(layer.keys, reference.keys, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="layer 0"):
        job.absorb(fast.start_prefill([first]))  # a prefill must catch up to the layer first


def test_a_request_arriving_during_a_prefill_joins_it_and_gets_what_it_gets_alone(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, late = prompts(tiny)[1], prompts(tiny)[2]
    absorbed: list[int] = []

    async def scenario() -> tuple[tuple[str, Finished], tuple[str, Finished]]:
        engine = Engine(tiny, max_batch_size=8).start()
        loop = asyncio.get_running_loop()
        arrived = threading.Event()
        generations = {}
        start_prefill, absorb = FastLlama.start_prefill, PackedPrefill.absorb

        def submit_late() -> None:
            generations["late"] = engine.submit(late, GREEDY)
            arrived.set()

        def prefill_with_an_arrival(self, batch_prompts):  # noqa: ANN001, ANN202
            job = start_prefill(self, batch_prompts)
            if batch_prompts == [first]:
                run_layer = job.step

                def step() -> None:
                    run_layer()
                    if job.layer == 1:  # the late request arrives while the first is at layer 1 of 2
                        loop.call_soon_threadsafe(submit_late)
                        assert arrived.wait(5)

                job.step = step
            return job

        def record_absorb(self, other) -> None:  # noqa: ANN001
            absorbed.append(self.layer)
            absorb(self, other)

        monkeypatch.setattr(FastLlama, "start_prefill", prefill_with_an_arrival)
        monkeypatch.setattr(PackedPrefill, "absorb", record_absorb)
        try:
            alone_first = engine.submit(first, GREEDY)
            first_result = await alone_first.text()
            return first_result, await generations["late"].text()
        finally:
            engine.stop()

    joined = asyncio.run(scenario())
    assert absorbed == [1]  # it joined the prefill in flight, at layer 1
    monkeypatch.undo()
    expected = asyncio.run(alone(tiny))
    assert joined == (expected[1], expected[2])


def test_the_lean_llama_forward_computes_what_transformers_computes(tiny: LoadedModel) -> None:
    fast, reference = tiny.forward, kv.TransformersForward(tiny.model)
    assert isinstance(fast, FastLlama)
    rows = prompts(tiny)

    def greedy(forward: kv.Forward, batch_prompts: list[list[int]], steps: int) -> tuple[list[list[int]], torch.Tensor]:
        batch, logits = kv.prefill(forward, batch_prompts)
        first_logits, out = logits, [[t] for t in logits.argmax(-1).tolist()]
        for _ in range(steps):
            kv.set_next_tokens(batch, [row[-1] for row in out])
            for row, token in zip(out, kv.decode(forward, batch).argmax(-1).tolist(), strict=True):
                row.append(token)
        return out, first_logits

    # Every prompt in one packed prefill, then decoded side by side, left-padded, past the
    # buffers' first room (64 positions), against transformers one prompt at a time.
    together, logits = greedy(fast, rows, 70)
    # transformers' own forward (any other architecture) batches the same way.
    assert greedy(reference, rows, 70)[0] == together
    for i, prompt in enumerate(rows):
        single, single_logits = greedy(reference, [prompt], 70)
        assert together[i] == single[0]
        torch.testing.assert_close(logits[i], single_logits[0], rtol=1e-4, atol=1e-4)


async def _text_after_first(generation, started: asyncio.Event) -> tuple[str, Finished]:
    parts = []
    async for event in generation:
        started.set()
        if isinstance(event, TextDelta):
            parts.append(event.text)
    assert generation.finished is not None
    return "".join(parts), generation.finished


def test_seeded_sampling_repeats_whatever_runs_beside_it(tiny: LoadedModel) -> None:
    seeded = SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=42, ignore_eos=True)

    async def run() -> tuple[tuple[str, Finished], ...]:
        engine = Engine(tiny).start()
        try:
            first = await collect(engine, prompts(tiny)[1], seeded)
            noise = collect(engine, prompts(tiny)[2], SamplingParams(max_tokens=10, temperature=1.0))
            second, _ = await asyncio.gather(collect(engine, prompts(tiny)[1], seeded), noise)
            return first, second
        finally:
            engine.stop()

    first, second = asyncio.run(run())
    assert first == second


def test_cancel_frees_the_slot_at_once(tiny: LoadedModel) -> None:
    async def run() -> tuple[Finished | None, int]:
        engine = Engine(tiny).start()
        try:
            generation = engine.submit(prompts(tiny)[0], SamplingParams(max_tokens=200, temperature=0, ignore_eos=True))
            events = aiter(generation)
            await anext(events)
            generation.cancel()
            async for _ in events:
                pass
            return generation.finished, engine.active
        finally:
            engine.stop()

    finished, active = asyncio.run(run())
    assert finished is not None and finished.reason == "cancelled"
    assert finished.completion_tokens < 200
    assert active == 0


def test_a_full_queue_refuses_and_a_free_slot_never_waits(tiny: LoadedModel) -> None:
    async def run() -> None:
        engine = Engine(tiny, max_batch_size=1, max_queue=1).start()
        try:
            long = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
            running = engine.submit(prompts(tiny)[0], long)
            await anext(aiter(running))  # it holds the only slot now
            queued = engine.submit(prompts(tiny)[0], long)
            with pytest.raises(QueueFull):
                engine.submit(prompts(tiny)[0], long)
            running.cancel()
            queued.cancel()
        finally:
            engine.stop()

    asyncio.run(run())


def test_limits_name_what_was_exceeded(tiny: LoadedModel) -> None:
    engine = Engine(tiny, max_tokens_limit=100)
    with pytest.raises(LimitExceeded) as over:
        engine.check_limits(10, 101)
    assert over.value.limit == "max_tokens"
    with pytest.raises(LimitExceeded) as long:
        engine.check_limits(256, 1)
    assert long.value.limit == "context_length"
    with pytest.raises(LimitExceeded):
        engine.check_limits(200, 60)
    assert engine.check_limits(200, None) == 56  # no max_tokens: what is left of the context


def test_stop_strings_end_a_sequence_with_stop(tiny: LoadedModel) -> None:
    async def run() -> tuple[str, Finished, str]:
        engine = Engine(tiny).start()
        try:
            full, _ = await collect(engine, prompts(tiny)[1], GREEDY)
            stop = full[3:6]
            text, finished = await collect(
                engine, prompts(tiny)[1], SamplingParams(max_tokens=12, temperature=0, ignore_eos=True, stop=(stop,))
            )
            return full, finished, text
        finally:
            engine.stop()

    full, finished, text = asyncio.run(run())
    assert finished.reason == "stop"
    assert text == full[: full.index(full[3:6])]


def test_a_retired_engine_refuses_new_work_and_drains(tiny: LoadedModel) -> None:
    async def run() -> tuple[Finished, Engine]:
        engine = Engine(tiny).start()
        generation = engine.submit(prompts(tiny)[0], SamplingParams(max_tokens=30, temperature=0, ignore_eos=True))
        engine.retire()
        with pytest.raises(EngineRetired):
            engine.submit(prompts(tiny)[0], GREEDY)
        events = [e async for e in generation]
        await asyncio.to_thread(engine.stopped.wait, 10)
        assert all(isinstance(e, TextDelta) for e in events[:-1])
        return events[-1], engine

    finished, engine = asyncio.run(run())
    assert finished == Finished("length", finished.prompt_tokens, 30)
    assert engine.stopped.is_set() and engine.loaded is None


def test_a_request_cancelled_while_queued_leaves_the_queue_at_once(tiny: LoadedModel) -> None:
    async def run() -> tuple[Finished | None, int, int]:
        engine = Engine(tiny, max_batch_size=1, max_queue=4).start()
        try:
            long = SamplingParams(max_tokens=200, temperature=0, ignore_eos=True)
            running = engine.submit(prompts(tiny)[0], long)
            await anext(aiter(running))
            queued = engine.submit(prompts(tiny)[0], long)
            queued.cancel()
            async for _ in queued:  # ends with Finished
                pass
            return queued.finished, engine.waiting, engine.active
        finally:
            engine.stop()

    finished, waiting, active = asyncio.run(run())
    assert finished == Finished("cancelled", finished.prompt_tokens, 0)
    assert (waiting, active) == (0, 1)  # the running request kept its slot
