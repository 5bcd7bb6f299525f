"""The running batch: every active sequence's KV cache in one left-padded buffer per layer.

Sequences of different lengths share one decode forward pass. Each row is left-padded to the
longest; the attention mask hides the padding and explicit position ids keep each row's
rotary positions its own. Joining prompts are prefilled without padding (packed end to end in
one pass by `FastLlama`, one at a time by transformers' forward), so no attention row is fully
masked and each prompt's result equals an unbatched run; they are then joined to the batch. A
leaving row is dropped and the padding nobody needs any more is trimmed. Each layer's buffer
keeps room past the filled positions, so a decode step writes its keys and values in place
instead of copying the whole cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import DynamicCache, PreTrainedModel

from inference.llama import FastLlama, LayerKV
from inference.settings import Quantization

# Positions of room a buffer gets when it is (re)allocated: one copy of the cache per this many
# decode steps instead of one per step.
ROOM = 64


class PrefillJob(Protocol):
    """A prefill run step by step (`FastLlama`'s `PackedPrefill`: a step per layer; prompts
    arriving meanwhile may join it between steps with `absorb`)."""

    layer: int  # steps run so far
    layers: int  # steps in all

    @property
    def done(self) -> bool: ...

    @property
    def tokens(self) -> int: ...

    def step(self) -> None: ...

    def absorb(self, other: PrefillJob) -> None: ...

    def result(self) -> tuple[list[list[LayerKV]], torch.Tensor]: ...


class Forward(Protocol):
    """A model's forward pass as the batch uses it (`FastLlama` or `TransformersForward`)."""

    def prefill(self, prompts: list[list[int]]) -> tuple[list[list[LayerKV]], torch.Tensor]: ...

    def start_prefill(self, prompts: list[list[int]]) -> PrefillJob: ...

    def decode(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: list[LayerKV]
    ) -> torch.Tensor: ...


class TransformersForward:
    """Any causal language model through transformers' own forward; prompts are prefilled one by one."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model

    def _forward(self, **inputs: torch.Tensor | DynamicCache) -> torch.Tensor:
        # logits_to_keep=1: only the last position's logits are needed, which spares the
        # vocabulary projection of every prompt token.
        out = self.model(**inputs, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :]

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> tuple[list[list[LayerKV]], torch.Tensor]:
        """Each prompt's one-row cache and the logits of its first new token (prompts, vocab)."""
        device = self.model.device
        caches, logits = [], []
        for prompt in prompts:
            ids = torch.tensor([prompt], dtype=torch.long, device=device)
            cache = DynamicCache()
            positions = torch.arange(len(prompt), device=device).unsqueeze(0)
            mask = torch.ones_like(ids)
            logits.append(self._forward(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache))
            caches.append([LayerKV(layer.keys, layer.values) for layer in cache.layers])
        return caches, torch.cat(logits)

    def start_prefill(self, prompts: list[list[int]]) -> PrefillJob:
        """The prefill as one step: transformers' forward runs every layer at once, so nothing joins it."""
        return _WholePrefill(self, prompts)

    @torch.inference_mode()
    def decode(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: list[LayerKV]
    ) -> torch.Tensor:
        """One token per row, as `FastLlama.decode`; the new keys and values go into the buffers."""
        filled = mask.shape[1] - 1
        dynamic = DynamicCache(ddp_cache_data=[(kv.keys[:, :, :filled], kv.values[:, :, :filled]) for kv in cache])
        logits = self._forward(
            input_ids=tokens, attention_mask=mask, position_ids=positions.unsqueeze(1), cache=dynamic
        )
        for kv, layer in zip(cache, dynamic.layers, strict=True):
            kv.keys[:, :, filled] = layer.keys[:, :, -1]
            kv.values[:, :, filled] = layer.values[:, :, -1]
        return logits


class _WholePrefill:
    """`TransformersForward.prefill` as a `PrefillJob` of one step."""

    layers = 1

    def __init__(self, forward: TransformersForward, prompts: list[list[int]]) -> None:
        self._forward, self._prompts = forward, prompts
        self.layer = 0
        self._result: tuple[list[list[LayerKV]], torch.Tensor] | None = None

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def tokens(self) -> int:
        return sum(len(p) for p in self._prompts)

    def step(self) -> None:
        self._result = self._forward.prefill(self._prompts)
        self.layer = 1

    def absorb(self, other: PrefillJob) -> None:
        raise ValueError("transformers' prefill runs whole: nothing can join it")

    def result(self) -> tuple[list[list[LayerKV]], torch.Tensor]:
        assert self._result is not None
        return self._result


def forward_for(model: PreTrainedModel, *, quantization: Quantization = Quantization.NONE) -> Forward:
    """The fastest forward pass that computes exactly `model`'s arithmetic; `quantization` as
    `FastLlama` takes it, where the lean forward takes the model (transformers' forward keeps the
    weights as loaded)."""
    if FastLlama.supports(model):
        return FastLlama(model, quantization=quantization)
    return TransformersForward(model)


@dataclass
class KVBatch:
    """The rows being decoded together: their key/value buffers, attention mask, positions and
    next input tokens. Rows are left-padded to one filled length."""

    cache: list[LayerKV]  # per layer; positions [0, length) are filled, the rest is room
    mask: torch.Tensor  # (batch, length): 1 for real tokens, 0 for left padding
    positions: torch.Tensor  # (batch,) position id of each row's next input token
    next_tokens: torch.Tensor  # (batch, 1) each row's next input token

    @property
    def size(self) -> int:
        """Rows in the batch."""
        return self.mask.shape[0]

    @property
    def length(self) -> int:
        """Filled length in tokens, padding included."""
        return self.mask.shape[1]

    @property
    def capacity(self) -> int:
        """Positions the buffers hold before they must grow."""
        return self.cache[0].keys.shape[2]


def prefill(forward: Forward, prompts: list[list[int]]) -> tuple[KVBatch, torch.Tensor]:
    """Run the prompts; answer their batch (rows in order, left-padded) and the logits of each
    one's first new token (prompts, vocab)."""
    caches, logits = forward.prefill(prompts)
    return prefilled(caches, [len(p) for p in prompts], logits.device), logits


def prefilled(caches: list[list[LayerKV]], lengths: list[int], device: torch.device) -> KVBatch:
    """The batch of prompts whose one-row caches a prefill made (rows in order, left-padded)."""
    rows = [
        KVBatch(
            cache=cache,
            mask=torch.ones((1, length), dtype=torch.long, device=device),
            positions=torch.tensor([length], device=device),
            next_tokens=torch.zeros((1, 1), dtype=torch.long, device=device),
        )
        for cache, length in zip(caches, lengths, strict=True)
    ]
    return join(rows)


def decode(forward: Forward, batch: KVBatch) -> torch.Tensor:
    """One forward pass for every row's next token; answer the logits (batch, vocab)."""
    if batch.length == batch.capacity:
        _reallocate(batch, batch.length)
    ones = torch.ones((batch.size, 1), dtype=batch.mask.dtype, device=batch.mask.device)
    batch.mask = torch.cat([batch.mask, ones], dim=1)
    logits = forward.decode(batch.next_tokens, batch.positions, batch.mask, batch.cache)
    batch.positions = batch.positions + 1
    return logits


def set_next_tokens(batch: KVBatch, tokens: list[int]) -> None:
    """Set each row's next input token (one per row, in row order) for the next `decode`."""
    batch.next_tokens = torch.tensor(tokens, dtype=torch.long, device=batch.mask.device).unsqueeze(1)


@torch.inference_mode()
def join(batches: list[KVBatch | None]) -> KVBatch:
    """One batch holding the rows of each batch in order, left-padded to the longest, with room."""
    parts = [b for b in batches if b is not None]
    if len(parts) == 1:
        return parts[0]
    length = max(b.length for b in parts)
    size = sum(b.size for b in parts)
    cache = []
    for layers in zip(*(b.cache for b in parts), strict=True):
        keys, values = _buffers(layers[0], size, length + ROOM)
        row = 0
        for part, layer in zip(parts, layers, strict=True):
            rows, start = slice(row, row + part.size), length - part.length
            keys[rows, :, start:length] = layer.keys[:, :, : part.length]
            values[rows, :, start:length] = layer.values[:, :, : part.length]
            row += part.size
        cache.append(LayerKV(keys, values))
    mask = torch.zeros((size, length), dtype=parts[0].mask.dtype, device=parts[0].mask.device)
    row = 0
    for part in parts:
        mask[row : row + part.size, length - part.length :] = part.mask
        row += part.size
    return KVBatch(
        cache=cache,
        mask=mask,
        positions=torch.cat([b.positions for b in parts]),
        next_tokens=torch.cat([b.next_tokens for b in parts]),
    )


@torch.inference_mode()
def keep_rows(batch: KVBatch, rows: list[int]) -> KVBatch | None:
    """The batch with only `rows`, trimmed of the left padding no remaining row needs."""
    if not rows:
        return None
    index = torch.tensor(rows, dtype=torch.long, device=batch.mask.device)
    mask = batch.mask.index_select(0, index)
    # Leading columns that are padding in every remaining row can go.
    start = int(mask.any(dim=0).to(torch.int8).argmax())
    for layer in batch.cache:
        layer.keys = layer.keys.index_select(0, index)[:, :, start:]
        layer.values = layer.values.index_select(0, index)[:, :, start:]
    return KVBatch(
        cache=batch.cache,
        mask=mask[:, start:],
        positions=batch.positions.index_select(0, index),
        next_tokens=batch.next_tokens.index_select(0, index),
    )


def _buffers(like: LayerKV, size: int, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    _, heads, _, dim = like.keys.shape
    shape = (size, heads, capacity, dim)
    options = {"dtype": like.keys.dtype, "device": like.keys.device}
    # Zeros, not empty: padding positions are masked, but 0 * NaN from stale memory would not be.
    return torch.zeros(shape, **options), torch.zeros(shape, **options)


@torch.inference_mode()
def _reallocate(batch: KVBatch, filled: int) -> None:
    for layer in batch.cache:
        keys, values = _buffers(layer, batch.size, filled + ROOM)
        keys[:, :, :filled] = layer.keys[:, :, :filled]
        values[:, :, :filled] = layer.values[:, :, :filled]
        layer.keys, layer.values = keys, values
