"""Choosing the next token and turning tokens into text: sampling, incremental detokenizing, stops."""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks its tokens. Temperature 0 is greedy and deterministic."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # Keep generating past the end-of-sequence token (benchmarks need fixed output lengths).
    ignore_eos: bool = False
    # OpenAI's `logit_bias`: (token id, bias) pairs added to the logits before picking.
    logit_bias: tuple[tuple[int, int], ...] = ()

    @property
    def greedy(self) -> bool:
        """Temperature 0 or below, or so small that it is 0 as a float32 (sampling runs in float32,
        and its limit as the temperature falls is the most likely token): no randomness."""
        return self.temperature <= 0.0 or struct.unpack("f", struct.pack("f", self.temperature))[0] == 0.0

    def make_generator(self) -> torch.Generator | None:
        """A per-request random stream: the same seed gives the same tokens, whatever else runs."""
        if self.greedy:
            return None
        generator = torch.Generator()
        generator.manual_seed(self.seed if self.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
        return generator


def pick_tokens(
    logits: torch.Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None]
) -> list[int]:
    """Next token for each row of `logits` (batch, vocab), each row with its own parameters."""
    if biased := [row for row, p in enumerate(params) if p.logit_bias]:
        logits = logits.clone()  # the caller's logits stay as the model gave them
        for row in biased:
            ids, bias = zip(*params[row].logit_bias, strict=True)
            logits[row, list(ids)] += torch.tensor(bias, dtype=logits.dtype, device=logits.device)
    # In float32: torch's CPU argmax over bfloat16 is 4x slower (1.4 vs 0.35 ms for 16 rows of
    # SmolLM2's 49,152 logits, 2% of a decode step), and widening bfloat16 is exact, so the same
    # token wins (the first of equal ones, as before).
    chosen = logits.float().argmax(dim=-1).tolist()
    for row, (p, generator) in enumerate(zip(params, generators, strict=True)):
        if not p.greedy:
            chosen[row] = _sample(logits[row], p, generator)
    return chosen


def _sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    # Sampling runs in float32 on the CPU: the same seed then gives the same tokens on any device.
    # Less the largest logit first: a tiny temperature (1e-40) then gives -inf or 0, never inf - inf.
    scores = logits.float().cpu()
    probs = torch.softmax((scores - scores.max()) / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest set whose mass reaches top_p (the first token always stays).
        outside = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
        sorted_probs[outside] = 0.0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of `text` could be the start of a stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Index of the earliest stop string in `text` at or after `start`, or None."""
    found = [i for stop in stops if (i := text.find(stop, start)) != -1]
    return min(found) if found else None


@dataclass
class Detokenizer:
    """Turns one sequence's tokens into text deltas, holding back what a stop string may need.

    Decodes a small window, not the whole sequence, per token: a token can complete a
    multi-byte character started by the previous ones (then it waits for the rest), and a
    word-piece's leading space depends on its neighbour.
    """

    tokenizer: PreTrainedTokenizerBase
    stops: tuple[str, ...] = ()
    ids: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0
    stopped: bool = False
    _prefix: int = 0
    _read: int = 0

    def add(self, token_id: int) -> str:
        """Add a token; answer the text now safe to send (maybe empty). Sets `stopped`."""
        self.ids.append(token_id)
        before = self.tokenizer.decode(self.ids[self._prefix : self._read], skip_special_tokens=True)
        after = self.tokenizer.decode(self.ids[self._prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""  # an incomplete character, or a token with no text of its own
        self.text += after[len(before) :]
        self._prefix, self._read = self._read, len(self.ids)
        return self._release()

    def finish(self) -> str:
        """The text still held back, sent when the sequence ends for another reason."""
        if self.stopped:
            return ""
        rest = self.text[self.emitted :]
        self.emitted = len(self.text)
        return rest

    def _release(self) -> str:
        if self.stops:
            # Held-back text is never sent, so a stop string can only begin at or after `emitted`.
            at = find_stop(self.text, self.stops, self.emitted)
            if at is not None:
                self.stopped = True
                self.text = self.text[:at]
                delta = self.text[self.emitted :]
                self.emitted = len(self.text)
                return delta
        safe = len(self.text) - held_back(self.text[self.emitted :], self.stops)
        delta = self.text[self.emitted : safe]
        self.emitted = max(self.emitted, safe)
        return delta
