"""The running batch: every active sequence's KV cache in one left-padded tensor per layer.

Sequences of different lengths share one decode forward pass. Each row is left-padded to the
longest; the attention mask hides the padding and explicit position ids keep each row's
rotary positions its own. A joining sequence is prefilled alone (no padding inside a
prefill, so no fully-masked attention rows and results equal to an unbatched run) and then
concatenated in; a leaving one is dropped and the padding nobody needs any more is trimmed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel


@dataclass
class KVBatch:
    """The rows being decoded together: their shared key/value cache, attention mask, positions
    and next input tokens. Rows are left-padded to one cached length."""

    cache: DynamicCache
    mask: torch.Tensor  # (batch, cached length): 1 for real tokens, 0 for left padding
    positions: torch.Tensor  # (batch,) position id of each row's next input token
    next_tokens: torch.Tensor  # (batch, 1) each row's next input token

    @property
    def size(self) -> int:
        """Rows in the batch."""
        return self.mask.shape[0]

    @property
    def length(self) -> int:
        """Cached length in tokens, padding included."""
        return self.mask.shape[1]


def _forward(model: PreTrainedModel, **inputs: torch.Tensor | DynamicCache) -> torch.Tensor:
    # logits_to_keep=1: only the last position's logits are needed, which spares the
    # vocabulary projection of every prompt token.
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1, :]


@torch.inference_mode()
def prefill(model: PreTrainedModel, prompt: list[int], device: torch.device) -> tuple[KVBatch, torch.Tensor]:
    """Run one prompt; answer its one-row batch and the logits of its first new token."""
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    mask = torch.ones_like(ids)
    cache = DynamicCache()
    positions = torch.arange(len(prompt), device=device).unsqueeze(0)
    logits = _forward(model, input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache)
    batch = KVBatch(
        cache=cache,
        mask=mask,
        positions=torch.tensor([len(prompt)], device=device),
        next_tokens=torch.zeros((1, 1), dtype=torch.long, device=device),
    )
    return batch, logits


@torch.inference_mode()
def decode(model: PreTrainedModel, batch: KVBatch) -> torch.Tensor:
    """One forward pass for every row's next token; answer the logits (batch, vocab)."""
    ones = torch.ones((batch.size, 1), dtype=batch.mask.dtype, device=batch.mask.device)
    batch.mask = torch.cat([batch.mask, ones], dim=1)
    logits = _forward(
        model,
        input_ids=batch.next_tokens,
        attention_mask=batch.mask,
        position_ids=batch.positions.unsqueeze(1),
        cache=batch.cache,
    )
    batch.positions = batch.positions + 1
    return logits


def set_next_tokens(batch: KVBatch, tokens: list[int]) -> None:
    """Set each row's next input token (one per row, in row order) for the next `decode`."""
    batch.next_tokens = torch.tensor(tokens, dtype=torch.long, device=batch.mask.device).unsqueeze(1)


@torch.inference_mode()
def concat(a: KVBatch, b: KVBatch) -> KVBatch:
    """One batch holding the rows of `a` then those of `b`, left-padded to the longer one."""
    length = max(a.length, b.length)

    def pad(t: torch.Tensor, current: int, dim_from_end: int) -> torch.Tensor:
        missing = length - current
        if missing == 0:
            return t
        return F.pad(t, (0, 0) * (dim_from_end - 1) + (missing, 0))

    for la, lb in zip(a.cache.layers, b.cache.layers, strict=True):
        la.keys = torch.cat([pad(la.keys, a.length, 2), pad(lb.keys, b.length, 2)], dim=0)
        la.values = torch.cat([pad(la.values, a.length, 2), pad(lb.values, b.length, 2)], dim=0)
    return KVBatch(
        cache=a.cache,
        mask=torch.cat([pad(a.mask, a.length, 1), pad(b.mask, b.length, 1)], dim=0),
        positions=torch.cat([a.positions, b.positions]),
        next_tokens=torch.cat([a.next_tokens, b.next_tokens]),
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
    for layer in batch.cache.layers:
        layer.keys = layer.keys.index_select(0, index)[:, :, start:, :]
        layer.values = layer.values.index_select(0, index)[:, :, start:, :]
    return KVBatch(
        cache=batch.cache,
        mask=mask[:, start:],
        positions=batch.positions.index_select(0, index),
        next_tokens=batch.next_tokens.index_select(0, index),
    )
