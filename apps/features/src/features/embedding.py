"""The embedding model, run off the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from genai_platform.accelerators import Dtype, resolved_dtype
from genai_platform.contracts.openai import vocabulary_size

log = logging.getLogger(__name__)


def default_batch_size(device: str) -> int:
    """Texts per forward pass when the settings leave it open.

    sentence-transformers sorts a request's texts by length and pads each batch to its longest
    text, so on a CPU small batches waste little on padding: measured on 2 cores with texts of
    50-200 tokens, batches of 4-16 embed 1.5x as many texts per second as batches of 64
    (bench/README.md). A GPU wants large batches.
    """
    return 16 if device == "cpu" else 64


def default_threads(device: str) -> int:
    """Torch intra-op threads for the embedder's forward passes; 0 leaves torch's default (one per core).

    One on a CPU: the platform's apps share its cores (inference decodes with every one of them
    while a chat's query is embedded), and torch's OpenMP workers spin-wait for each other, so a
    pass split over two busy cores waits for the slower one. Measured on this project's 2 shared
    cores under load average 6 (bench/README.md, "Chat pipeline"): one question 31-37 ms p50 on
    one thread against 167-221 ms on two; a batch of 16 chunks 0.8-0.9 s against 2.2-2.4 s.
    A GPU does its own scheduling.
    """
    return 1 if device == "cpu" else 0


@dataclass(frozen=True)
class Embeddings:
    """A batch's vectors (one row per text, in order) and the tokens read."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised
    tokens: int  # tokens the model read (after its own truncation), for usage accounting


class Embedder:
    """A sentence-transformers model behind one worker thread.

    One thread, because the model is not made for concurrent calls; the event loop only awaits, so
    health probes and the broker's deliveries keep being answered while a batch runs. Its torch
    intra-op threads are `default_threads(device)` unless `threads` says otherwise (0: torch's
    default), set in that worker thread, where every forward pass runs.

    Its weights are in `dtype` (genai_platform.accelerators: `auto` is bfloat16 on CUDA and on CPUs
    with AVX-512 BF16 or AMX). Measured on this session's 2-core AMD EPYC (AVX512-BF16), one thread: a question
    9.4 ms against 13.3 in float32, four 15.7 against 25.5, sixteen 100-word chunks 251 against
    482 ms; each vector within cosine 0.998 of float32's (README, "Speed"). The vectors are float32
    either way, so an index built in one dtype is searched with queries embedded in the other.
    """

    def __init__(
        self,
        model_path: str,
        *,
        name: str,
        batch_size: int | None,
        device: str | None = None,
        threads: int | None = None,
        dtype: Dtype = Dtype.AUTO,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.name = name
        self._model = SentenceTransformer(model_path, device=device, local_files_only=True)
        self.dtype = resolved_dtype(dtype, self._model.device.type)
        self._model.to(getattr(torch, self.dtype))
        self.dimensions = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length)
        # What a token-id input may hold: the ids its tokenizer makes (added tokens included) that
        # have a row in its embedding matrix (the platform's one rule, shared with inference).
        rows = self._model[0].auto_model.get_input_embeddings().num_embeddings
        self.vocab_size = vocabulary_size(len(self._model.tokenizer), int(rows))
        self.device = str(self._model.device)
        self.batch_size = batch_size or default_batch_size(self._model.device.type)
        self.threads = default_threads(self._model.device.type) if threads is None else threads
        self._worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="embedder", initializer=_use_threads, initargs=(self.threads,)
        )
        # Calls waiting for the worker (`embed`): their texts, and the future each one awaits.
        self._queue: list[tuple[list[str], asyncio.Future[Embeddings]]] = []
        self._queue_lock = threading.Lock()

    @classmethod
    async def load(cls, model_path: str, **kwargs) -> Embedder:
        """Load the model on a thread (seconds), keeping the event loop free; kwargs as `__init__`."""
        return await asyncio.to_thread(cls, model_path, **kwargs)

    def close(self) -> None:
        """Stop the worker thread; queued batches are cancelled."""
        self._worker.shutdown(wait=False, cancel_futures=True)
        with self._queue_lock:
            queued, self._queue = self._queue, []
        for _, future in queued:
            future.get_loop().call_soon_threadsafe(future.cancel)

    def encode(self, texts: list[str]) -> Embeddings:
        """Blocking: embed `texts` in batches of `batch_size`."""
        if not texts:
            return Embeddings(np.zeros((0, self.dimensions), dtype=np.float32), 0)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return Embeddings(self._unit_length(np.asarray(vectors, dtype=np.float32)), self.count_tokens(texts))

    def encode_token_ids(self, arrays: list[list[int]]) -> Embeddings:
        """Blocking: embed token-id arrays as the model reads them, in batches of `batch_size`.

        Each array is the model's input ids as they are given, as vLLM and TEI read token inputs: no
        special token is added (`tokenizer(text)["input_ids"]`, which holds them, embeds as `text`
        does), no decode and re-encode. Each array is one row of `(len(arrays), dimensions)` float32
        vectors, L2-normalised; `tokens` is the ids' count. Ids must be below `vocab_size` and an
        array at most `max_tokens` long (the route checks both; the model raises IndexError past them).
        """
        import torch
        from sentence_transformers.util import batch_to_device

        if not arrays:
            return Embeddings(np.zeros((0, self.dimensions), dtype=np.float32), 0)
        tokenizer = self._model.tokenizer
        # Longest first, as encode() sorts texts: a batch pads to its longest array.
        order = sorted(range(len(arrays)), key=lambda i: -len(arrays[i]))
        rows = []
        self._model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = [arrays[i] for i in order[start : start + self.batch_size]]
                # The tokenizer's own padding (its pad id, side and attention mask), as for a text batch.
                features = dict(tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt"))
                if "token_type_ids" in tokenizer.model_input_names:
                    features["token_type_ids"] = torch.zeros_like(features["input_ids"])
                output = self._model(batch_to_device(features, self._model.device))["sentence_embedding"]
                # Normalised in the model's dtype, then float32: what encode(normalize_embeddings=True) does.
                rows.append(torch.nn.functional.normalize(output, p=2, dim=1).float().cpu())
        vectors = torch.cat(rows).numpy()[np.argsort(order)]
        return Embeddings(self._unit_length(vectors), sum(len(ids) for ids in arrays))

    def _unit_length(self, vectors: np.ndarray) -> np.ndarray:
        """`vectors` (float32 rows, normalised in the model's dtype) at unit length in float32."""
        if self.dtype != "float32":
            # Normalised in the model's dtype, a vector's length is off by up to ~0.2% (bfloat16
            # keeps 8 bits of mantissa): unit length again in float32, as search's dot product needs.
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), np.finfo(np.float32).tiny)
        return vectors

    def count_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for `texts`, special tokens included, each cut at `max_tokens`."""
        encoded = self._model.tokenizer(texts, truncation=True, max_length=self.max_tokens, add_special_tokens=True)
        return sum(len(ids) for ids in encoded["input_ids"])

    async def token_counts(self, texts: list[str]) -> list[int]:
        """The tokens each text is, special tokens included and nothing cut (the model reads
        `max_tokens` of them at most). On the worker thread: a fast tokenizer's truncation setting
        is state, and two threads changing it at once fail ("Already borrowed")."""

        def count() -> list[int]:
            encoded = self._model.tokenizer(texts, add_special_tokens=True, verbose=False)
            return [len(ids) for ids in encoded["input_ids"]]

        return await asyncio.get_running_loop().run_in_executor(self._worker, count)

    async def embed(self, texts: list[str]) -> Embeddings:
        """Embed `texts` on the worker thread (see `encode`).

        Calls that arrive while the worker is busy are embedded together, in one `encode` of all
        their texts, when the worker comes to them: four chat questions at once cost one forward
        pass instead of four passes one after another (bench/README.md, "Chat pipeline").
        Raises what `encode` raises.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Embeddings] = loop.create_future()
        with self._queue_lock:
            self._queue.append((texts, future))
        loop.run_in_executor(self._worker, self._embed_queued, loop)
        return await future

    async def embed_token_ids(self, arrays: list[list[int]]) -> Embeddings:
        """Embed token-id arrays on the worker thread (see `encode_token_ids`); raises what it raises."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, self.encode_token_ids, arrays)

    def _embed_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the worker: embed every queued call's texts in one `encode`, and answer each call."""
        with self._queue_lock:
            queued, self._queue = self._queue, []
        if not queued:
            return  # an earlier run took these calls with its own
        try:
            result = self.encode([text for texts, _ in queued for text in texts])
            answers: list[Embeddings | BaseException] = []
            start = 0
            for texts, _ in queued:
                tokens = result.tokens if len(queued) == 1 else self.count_tokens(texts)
                answers.append(Embeddings(result.vectors[start : start + len(texts)], tokens))
                start += len(texts)
        except Exception as error:  # every caller gets it, in its own task
            answers = [error] * len(queued)
        for (_, future), answer in zip(queued, answers, strict=True):
            loop.call_soon_threadsafe(_settle, future, answer)


def _settle(future: asyncio.Future[Embeddings], answer: Embeddings | BaseException) -> None:
    if future.done():  # the caller went away
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


def _use_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
