"""The served model version and its hot swap: load beside, switch atomically, drain, free."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from inference.decoding import SamplingParams
from inference.engine import Engine, EngineRetired, Generation
from inference.model import LoadedModel, load_model
from inference.settings import InferenceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    """The outcome of `ModelService.promote`: the version served before and now, and whether it changed."""

    previous: str | None
    current: str
    changed: bool


class ModelService:
    """Holds the engine that new requests go to; `promote` replaces it with no dropped request.

    The switch is one assignment on the event loop, where requests also pick their engine,
    so each request runs wholly on the old version or wholly on the new one. The old engine
    finishes what it holds, then its thread ends and the model's memory is freed.
    """

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self.current: Engine | None = None
        self.loading: str | None = None
        # Why nothing is served after `withdraw` (a deleted alias), until the next promotion.
        self.withdrawn: str | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[Engine] = set()

    @property
    def draining(self) -> list[Engine]:
        """Replaced engines still finishing their in-flight requests."""
        return [engine for engine in self._retiring if not engine.stopped.is_set()]

    @property
    def ready(self) -> bool:
        """Whether a model is being served."""
        return self.current is not None

    async def promote(self, source: str, version: str, name: str | None = None) -> Promotion:
        """Serve `version` from `source`; a no-op when that version is already served."""
        async with self._lock:
            previous = self.current
            if previous is not None and previous.version == version:
                return Promotion(previous.version, version, changed=False)
            self.loading = version
            try:
                engine = await asyncio.to_thread(self._load, source, version, name or self.settings.model_name)
                await self._warm_up(engine)
            except BaseException:
                self.loading = None
                raise
            self.current, self.loading, self.withdrawn = engine, None, None
            if previous is not None:
                self._retiring.add(previous)
                previous.retire()
                asyncio.get_running_loop().create_task(self._forget_when_stopped(previous))
            log.info("model version promoted", extra={"previous": previous and previous.version, "current": version})
            return Promotion(previous.version if previous else None, version, changed=True)

    async def withdraw(self, version: str, reason: str) -> bool:
        """Stop serving `version` when it is the one served: its in-flight requests finish, new ones
        are refused (NotLoaded) until the next `promote`. False when another version is served."""
        async with self._lock:
            engine = self.current
            if engine is None or engine.version != version:
                return False
            self.current, self.withdrawn = None, reason
            self._retiring.add(engine)
            engine.retire()
            asyncio.get_running_loop().create_task(self._forget_when_stopped(engine))
            log.warning("model version withdrawn", extra={"version": version, "reason": reason})
            return True

    def _load(self, source: str, version: str, name: str) -> Engine:
        s = self.settings
        loaded = load_model(
            source,
            name=name,
            version=version,
            cache_dir=s.model_cache_dir,
            device=s.device,
            dtype=s.dtype,
            context_length=s.context_length,
            quantization=s.quantization,
        )
        return Engine(
            loaded,
            max_batch_size=s.max_batch_size,
            max_queue=s.max_queue,
            prefill_token_budget=s.prefill_token_budget,
            max_tokens_limit=s.max_tokens_limit,
        ).start()

    @staticmethod
    async def _warm_up(engine: Engine) -> None:
        # The first forward pass allocates and picks kernels; pay for it before serving.
        assert engine.loaded is not None
        prompt = engine.loaded.encode_chat([{"role": "user", "content": "Hello"}])
        await engine.submit(prompt, SamplingParams(max_tokens=4, temperature=0.0)).text()

    async def _forget_when_stopped(self, engine: Engine) -> None:
        await asyncio.to_thread(engine.stopped.wait)
        self._retiring.discard(engine)

    async def close(self) -> None:
        """Stop every engine, the current one and those still draining."""
        for engine in [self.current, *self._retiring]:
            if engine is not None:
                engine.stop()
        self.current = None


class NotLoaded(Exception):
    """No model version is being served yet (still loading)."""


async def start_generation(
    service: ModelService,
    encode: Callable[[LoadedModel], list[int]],
    max_tokens: int | None,
    params: Callable[[int], SamplingParams],
) -> Generation:
    """Tokenize for the current version and queue the request there.

    Tokenizing happens off the loop, so a swap can land in between: the retired engine then
    refuses the request and it is tokenized again for the new version.
    """
    for _ in range(3):
        engine = service.current
        if engine is None or engine.loaded is None:
            raise NotLoaded()
        loaded = engine.loaded
        prompt = await asyncio.to_thread(encode, loaded)
        granted = engine.check_limits(len(prompt), max_tokens)
        try:
            return engine.submit(prompt, params(granted))
        except EngineRetired:
            continue
    raise NotLoaded()
