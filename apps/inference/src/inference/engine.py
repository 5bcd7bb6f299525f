"""Continuous batching: one thread steps every active sequence together, admitting and retiring.

Each step admits waiting requests (prefill, within a token budget) into the running batch,
then runs one decode forward pass for all of it. A request joins at the next step and leaves
the step it finishes, so nobody waits for a batch to drain. A request that arrives while a
prefill is in its first half joins that prefill at its next layer (after running the layers it
missed on its own) instead of waiting for it and a decode step: requests relayed by the gateway
reach inference some milliseconds apart, and the first one used to be prefilled alone while the
others waited (bench/README.md, "Chat pipeline"). The event loop only submits and reads: results
cross back through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal

import torch

from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS
from inference import batch as kv
from inference import metrics
from inference.decoding import Detokenizer, SamplingParams, pick_tokens
from inference.model import LoadedModel

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]


class QueueFull(Exception):
    """Every batch slot is taken and the waiting queue is full: try again shortly."""


class EngineRetired(Exception):
    """This engine's model version was replaced; submit to the current one."""


class LimitExceeded(Exception):
    """The request does not fit the model: `limit` names which limit, `value` its size."""

    def __init__(self, limit: str, value: int, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


@dataclass(frozen=True)
class TextDelta:
    """Text generated since the last event: whole characters, less what a stop string may still need."""

    text: str


@dataclass(frozen=True)
class Finished:
    """A generation's end: why (`stop`, `length`, `cancelled`, `error`) and its token counts."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


Event = TextDelta | Finished


@dataclass
class Sequence:
    """One request inside the engine thread."""

    prompt: list[int]
    params: SamplingParams
    detokenizer: Detokenizer
    deliver: Callable[[Event], None]
    arrived: float = field(default_factory=time.perf_counter)
    generator: torch.Generator | None = None
    generated: int = 0
    first_token_at: float | None = None
    cancelled: bool = False
    finished: bool = False


class Generation:
    """The caller's side of one request: an async stream of text deltas ending in `Finished`."""

    def __init__(self, engine: Engine, prompt_tokens: int) -> None:
        self.engine = engine
        self.prompt_tokens = prompt_tokens
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._sequence: Sequence | None = None
        self.finished: Finished | None = None

    def _deliver_threadsafe(self, loop: asyncio.AbstractEventLoop) -> Callable[[Event], None]:
        def deliver(event: Event) -> None:
            # A closed loop means nobody is left to read (shutdown): drop the event.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(self._events.put_nowait, event)

        return deliver

    async def __aiter__(self) -> AsyncIterator[Event]:
        while self.finished is None:
            event = await self._events.get()
            if isinstance(event, Finished):
                self.finished = event
            yield event

    async def text(self) -> tuple[str, Finished]:
        """Wait for the whole generation: its text and how it finished."""
        parts = [e.text async for e in self if isinstance(e, TextDelta)]
        assert self.finished is not None
        return "".join(parts), self.finished

    def cancel(self) -> None:
        """Free this request's slot at the next step (the client went away)."""
        if self._sequence is not None and self.finished is None:
            self._sequence.cancelled = True
            self.engine._wake()


class Engine:
    """Serves one loaded model version with continuous batching on a dedicated thread."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int = 32,
        max_queue: int = 64,
        prefill_token_budget: int = 1024,
        max_tokens_limit: int = MAX_COMPLETION_TOKENS,
    ) -> None:
        self.loaded: LoadedModel | None = loaded
        self.name = loaded.name
        self.version = loaded.version
        self.context_length = loaded.context_length
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.prefill_token_budget = prefill_token_budget
        self.max_tokens_limit = max_tokens_limit
        self._waiting: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._batch: kv.KVBatch | None = None
        self._finished: list[tuple[Sequence, Finished]] = []
        self._wakeup = threading.Condition()
        self._retired = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.version}", daemon=True)
        self.stopped = threading.Event()
        labels = {"model": self.name, "version": self.version}
        self._queue_depth = metrics.QUEUE_DEPTH.labels(**labels)
        self._batch_size = metrics.BATCH_SIZE.labels(**labels)
        self._ttft = metrics.TIME_TO_FIRST_TOKEN.labels(**labels)
        self._tpot = metrics.TIME_PER_OUTPUT_TOKEN.labels(**labels)
        self._prompt_tokens = metrics.PROMPT_TOKENS.labels(**labels)
        self._generated_tokens = metrics.GENERATED_TOKENS.labels(**labels)
        self._rejected = metrics.REQUESTS_REJECTED.labels(**labels)

    # --- the event loop's side -------------------------------------------------------------------

    def start(self) -> Engine:
        """Start the engine's decoding thread; returns the engine."""
        self._thread.start()
        return self

    @property
    def active(self) -> int:
        """Requests being decoded now."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        """Requests queued for a free slot."""
        return len(self._waiting)

    def check_limits(self, prompt_tokens: int, max_tokens: int | None) -> int:
        """The max_tokens this request will get; LimitExceeded when it cannot fit."""
        if max_tokens is not None and max_tokens > self.max_tokens_limit:
            message = f"max_tokens is {max_tokens}, over the limit of {self.max_tokens_limit}."
            raise LimitExceeded("max_tokens", self.max_tokens_limit, message)
        if prompt_tokens >= self.context_length:
            raise LimitExceeded(
                "context_length",
                self.context_length,
                f"The prompt has {prompt_tokens} tokens; the model's context length is {self.context_length}.",
            )
        room = self.context_length - prompt_tokens
        if max_tokens is None:
            return min(room, self.max_tokens_limit)
        if max_tokens > room:
            raise LimitExceeded(
                "context_length",
                self.context_length,
                f"The prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the model's "
                f"context length of {self.context_length}.",
            )
        return max_tokens

    def submit(self, prompt: list[int], params: SamplingParams) -> Generation:
        """Queue a request; it joins the running batch at the next step. Call from the event loop."""
        assert self.loaded is not None
        generation = Generation(self, len(prompt))
        sequence = Sequence(
            prompt=prompt,
            params=params,
            detokenizer=Detokenizer(self.loaded.tokenizer, params.stop),
            deliver=generation._deliver_threadsafe(asyncio.get_running_loop()),
            generator=params.make_generator(),
        )
        generation._sequence = sequence
        with self._wakeup:
            if self._retired:
                raise EngineRetired(self.version)
            # Free batch slots count as queue room: a request for a free slot never waits.
            free_slots = self.max_batch_size - len(self._active)
            if len(self._waiting) >= self.max_queue + max(free_slots, 0):
                self._rejected.inc()
                raise QueueFull()
            self._waiting.append(sequence)
            self._queue_depth.set(len(self._waiting))
            self._wakeup.notify()
        return generation

    def retire(self) -> None:
        """Accept no new request; finish those in flight, then stop and free the model."""
        with self._wakeup:
            self._retired = True
            self._wakeup.notify()

    def stop(self) -> None:
        """Cancel everything and stop the thread (service shutdown)."""
        with self._wakeup:
            self._retired = self._stopping = True
            self._wakeup.notify()

    def _wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify()

    # --- the engine thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._wakeup:
                    while not (self._waiting or self._active or self._retired):
                        self._wakeup.wait()
                    if self._stopping:
                        self._cancel_all()
                        self._tell_finished()
                        break
                    if self._retired and not (self._waiting or self._active):
                        break
                    admitted = self._take_admissions()
                try:
                    self._step(admitted)
                except Exception:
                    # One bad step must not kill the server: fail what ran, keep serving.
                    log.exception("engine step failed", extra={"version": self.version})
                    for sequence in [*self._active, *admitted]:
                        if not sequence.finished:
                            self._finish(sequence, "error")
                    self._active, self._batch = [], None
                self._queue_depth.set(len(self._waiting))
                self._batch_size.set(len(self._active))
                self._tell_finished()
        finally:
            self._release_model()

    def _take_admissions(self, *, joining: int = 0, tokens: int = 0) -> list[Sequence]:
        """Waiting requests for a prefill, within the batch's rows and the prefill token budget,
        beside `joining` requests of `tokens` prompt tokens already in it. Call under `_wakeup`."""
        # A request cancelled while queued leaves the queue now, not when a slot frees up.
        if any(s.cancelled for s in self._waiting):
            for sequence in [s for s in self._waiting if s.cancelled]:
                self._waiting.remove(sequence)
                self._finish(sequence, "cancelled")
        admitted: list[Sequence] = []
        budget = self.prefill_token_budget - tokens
        while self._waiting and len(self._active) + joining + len(admitted) < self.max_batch_size:
            head = self._waiting[0]
            # Always admit one into an empty prefill, so a prompt longer than the budget still runs.
            if (admitted or joining) and len(head.prompt) > budget:
                break
            budget -= len(self._waiting.popleft().prompt)
            admitted.append(head)
        return admitted

    def _prefill(self, joining: list[Sequence], admitted: list[Sequence]) -> tuple[kv.KVBatch, torch.Tensor]:
        """Prefill `joining`, layer by layer; requests arriving before its halfway layer join it
        (appended to `joining`, and to `admitted`, so that a failed step fails them too: see
        `_run`). Answers their batch and each one's first-token logits."""
        assert self.loaded is not None
        forward = self.loaded.forward
        job = forward.start_prefill([s.prompt for s in joining])
        while not job.done:
            job.step()
            # Past halfway, a late prompt's catching up would hold the others back longer than
            # waiting for the next step holds it back.
            if job.done or 2 * job.layer > job.layers or not self._waiting:
                continue
            with self._wakeup:
                late = self._take_admissions(joining=len(joining), tokens=job.tokens)
            if late:
                admitted.extend(late)  # one cancelled meanwhile is dropped after the prefill
                catching_up = forward.start_prefill([s.prompt for s in late])
                while catching_up.layer < job.layer:
                    catching_up.step()
                job.absorb(catching_up)
                joining.extend(late)
        caches, logits = job.result()
        return kv.prefilled(caches, [len(s.prompt) for s in joining], logits.device), logits

    def _step(self, admitted: list[Sequence]) -> None:
        assert self.loaded is not None
        forward = self.loaded.forward
        self._drop_finished()
        for sequence in admitted:
            if sequence.cancelled:
                self._finish(sequence, "cancelled")
        if joining := [s for s in admitted if not s.finished]:
            # All joining prompts in one prefill: the weights are read once for all of them,
            # and every first token leaves together (llama-server answers its slots the same way).
            rows, logits = self._prefill(joining, admitted)
            self._prompt_tokens.inc(sum(len(s.prompt) for s in joining))
            tokens = pick_tokens(logits, [s.params for s in joining], [s.generator for s in joining])
            kv.set_next_tokens(rows, tokens)
            self._batch = kv.join([self._batch, rows])
            self._active.extend(joining)
            for sequence, token in zip(joining, tokens, strict=True):
                self._accept(sequence, token)
        self._drop_finished()
        if self._batch is None:
            return
        logits = kv.decode(forward, self._batch)
        tokens = pick_tokens(logits, [s.params for s in self._active], [s.generator for s in self._active])
        kv.set_next_tokens(self._batch, tokens)
        for sequence, token in zip(self._active, tokens, strict=True):
            self._accept(sequence, token)
        self._drop_finished()

    def _accept(self, sequence: Sequence, token: int) -> None:
        """Record one generated token: deliver its text, and finish the sequence if it is done."""
        assert self.loaded is not None
        now = time.perf_counter()
        sequence.generated += 1
        self._generated_tokens.inc()
        if sequence.first_token_at is None:
            sequence.first_token_at = now
            self._ttft.observe(now - sequence.arrived)
        if token in self.loaded.eos_token_ids and not sequence.params.ignore_eos:
            self._finish(sequence, "stop")
            return
        delta = sequence.detokenizer.add(token)
        if delta:
            sequence.deliver(TextDelta(delta))
        out_of_room = len(sequence.prompt) + sequence.generated >= self.context_length
        if sequence.detokenizer.stopped:
            self._finish(sequence, "stop")
        elif sequence.generated >= sequence.params.max_tokens or out_of_room:
            self._finish(sequence, "length")

    def _finish(self, sequence: Sequence, reason: FinishReason) -> None:
        sequence.finished = True
        if reason in ("stop", "length"):
            rest = sequence.detokenizer.finish()
            if rest:
                sequence.deliver(TextDelta(rest))
        if sequence.generated > 1 and sequence.first_token_at is not None:
            self._tpot.observe((time.perf_counter() - sequence.first_token_at) / (sequence.generated - 1))
        metrics.REQUESTS_FINISHED.labels(self.name, self.version, reason).inc()
        # Told after the step's bookkeeping, so a caller told "finished" finds the slot free.
        self._finished.append((sequence, Finished(reason, len(sequence.prompt), sequence.generated)))

    def _tell_finished(self) -> None:
        finished, self._finished = self._finished, []
        for sequence, event in finished:
            sequence.deliver(event)

    def _drop_finished(self) -> None:
        for sequence in self._active:
            if sequence.cancelled and not sequence.finished:
                self._finish(sequence, "cancelled")
        keep = [i for i, s in enumerate(self._active) if not s.finished]
        if len(keep) == len(self._active):
            return
        self._active = [self._active[i] for i in keep]
        self._batch = kv.keep_rows(self._batch, keep) if self._batch is not None else None

    def _cancel_all(self) -> None:
        for sequence in [*self._active, *self._waiting]:
            if not sequence.finished:
                self._finish(sequence, "cancelled")
        self._active, self._batch = [], None
        self._waiting.clear()

    def _release_model(self) -> None:
        loaded, self.loaded = self.loaded, None
        device = loaded.device if loaded is not None else None
        del loaded
        self._batch = None
        gc.collect()
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()
        self._queue_depth.set(0)
        self._batch_size.set(0)
        self.stopped.set()
        log.info("engine stopped, model freed", extra={"model": self.name, "version": self.version})
