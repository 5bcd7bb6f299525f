"""A lean forward pass for Llama-family decoders (SmolLM2 is one), built for the engine's batch.

transformers' `LlamaForCausalLM.forward` is general: per step it builds 4-D masks, rotary
tables, cache bookkeeping and seven projections per layer, about 2,000 operators from Python
for one decode step of SmolLM2-135M. This module runs the same arithmetic with what the engine
needs only: the query/key/value projections fused into one matmul and gate/up into another
(the model's own weights become views of the fused tensors, so no memory is added), rotary
tables computed once, and SDPA attention with key/value head sharing. It also prefills several
prompts in one pass (packed end to end: every projection sees all their tokens at once, and
attention runs per prompt so none sees another's tokens).

Projections can be held in 4 bits (`Int4`, INFERENCE_QUANTIZATION) and the output head in 8
(`Int8`): a decode step of few rows is bound by reading the weights, and the packaged model's
layers are 4-bit (Q4_1) and its head 8-bit (Q8_0) in its GGUF anyway.

Only models whose forward is exactly this are taken (`FastLlama.supports`); any other
architecture keeps transformers' forward (`inference.batch` chooses).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from inference.settings import Quantization

log = logging.getLogger(__name__)


@dataclass
class LayerKV:
    """One layer's cached keys and values: (batch, key/value heads, capacity, head dim) buffers,
    of which the batch's first `length` positions are filled (the rest is room to decode into)."""

    keys: torch.Tensor
    values: torch.Tensor


class Dense:
    """A projection by its weight (out features, in features), as `torch.nn.Linear` without bias."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


# Above this many rows a step multiplies by the bfloat16 expansion instead of the 4-bit groups:
# torch's int4 CPU kernel unpacks every group for every row tile, so it wins while reading the
# weights dominates and loses once the arithmetic does. Decode steps of SmolLM2-135M on one
# thread of this project's Xeon, all projections: 1 row 9.5 vs 34.5 ms, 8 rows 31 vs 51 ms,
# 16 rows 61 vs 63 ms, 32 rows 118 vs 85 ms (bench/README.md, "Inference", int4).
INT4_MOST_ROWS = 16
# GGUF's Q4_0/Q4_1 blocks: 32 weights share one scale (and one minimum).
INT4_GROUP = 32


class Int4:
    """A projection whose weight is 4-bit integers in groups of `INT4_GROUP` along the input, each
    group with a scale and a zero point: w = (q - 8) * scale + zero, q in 0..15 (GGUF's Q4_1 is
    w = q * d + m, the same grid with scale d and zero m + 8d).

    It keeps the same weights twice: packed for torch's int4 kernel (a quarter of bfloat16's
    bytes, so a step of few rows reads a quarter as much), and expanded to the activations' dtype
    for steps of many rows and for prefill, where bfloat16 matmuls are faster. Both compute with
    the same weight values; they differ only in rounding, as any two matmul kernels do.
    """

    def __init__(self, weight: torch.Tensor, grid: Grid | None = None) -> None:
        """`weight` (out features, in features), in features a multiple of `INT4_GROUP`; the tensor
        is overwritten in place with the 4-bit values it now stands for (views of it follow).
        `grid`: `_grid(weight)`, when the caller has it already (`on_grid` needs it too)."""
        q, scale, zero = grid if grid is not None else _grid(weight)
        self.scales_zeros = torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous()
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).view_as(weight), 1)
        with torch.no_grad():
            weight.copy_(_expand(q, scale, zero).view_as(weight))
        self.weight = weight

    @staticmethod
    def on_grid(weight: torch.Tensor, grid: Grid | None = None) -> bool:
        """Whether every group of `weight` already holds at most 16 evenly spaced values, as a
        Q4_0/Q4_1 GGUF's layers do (and their conversion to safetensors, the registry's base
        version): then holding it in 4 bits loses nothing but the rounding of each group's scale
        and zero to the weight's dtype. A fine-tuned weight is not: its small changes would round
        back towards the grid. `grid`: `_grid(weight)`, when the caller has it already."""
        q, scale, zero = grid if grid is not None else _grid(weight)
        groups = weight.detach().float().view(q.shape)
        # bfloat16 rounds each value, and the scale and zero found from them, by up to 2**-9 of
        # themselves: the packaged model's groups come back within 4.4 * 2**-9 of their largest
        # value (exactly in float32). An off-grid group is off by about half a step: 1/15 of its
        # largest value, 34 * 2**-9. The line between them: 8 * 2**-9.
        slack = groups.abs().amax(-1, keepdim=True) * 2**-6
        return bool(((_expand(q, scale, zero) - groups).abs() <= slack).all())

    @staticmethod
    def supports(weight: torch.Tensor) -> bool:
        """Whether `weight` can be held in 4 bits here: bfloat16 on the CPU, its input features in
        whole groups. (torch's int4 CPU kernel takes float32 too, but through a path 40x slower.)"""
        return (
            weight.device.type == "cpu"
            and weight.dtype == torch.bfloat16
            and weight.dim() == 2
            and weight.shape[1] % INT4_GROUP == 0
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > INT4_MOST_ROWS:
            return F.linear(x, self.weight)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(rows, x.shape[-1]), self.packed, INT4_GROUP, self.scales_zeros
        )
        return y.view(*x.shape[:-1], y.shape[-1])


# At most this many rows multiply by the output head's 8-bit weights; more take the bfloat16 copy.
# SmolLM2-135M's head (49,152 x 576) on one thread of this project's AMD EPYC (AVX512-BF16), in ms:
# 1 row 4.0 vs 4.6 bfloat16, 2 rows 4.6 vs 6.6, 4 rows 5.8 vs 7.4, 6 rows 10.5 vs 8.0, 12 rows 17.9
# vs 9.6 (torch's int8 kernel converts every weight for every row; bench/README.md, "Inference").
INT8_MOST_ROWS = 4


class Int8:
    """A projection held as 8-bit integers with one scale per output row: w = q * scale, q in
    -127..127 (symmetric, round to nearest), for the output head, which a decode step of few rows
    reads whole (SmolLM2's is 56 MB in bfloat16, 28 in 8 bits). Memory: both forms are added
    beside the embedding the head is tied to, 84 MB for SmolLM2 (vocabulary x hidden x 3 bytes).

    As `Int4`, it keeps the values twice: 8-bit for torch's int8 kernel (few rows), and as a
    bfloat16 tensor for many rows, where bfloat16 matmuls are faster; both compute with the same
    values, so a row's logits do not depend on how many rows share its step beyond rounding. The
    bfloat16 copy is its own tensor: the head is often tied to the embedding, which keeps its values.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        """`weight` (out features, in features), bfloat16 on the CPU (`supports`); left unchanged."""
        w = weight.detach().float()
        largest = w.abs().amax(dim=1)
        # A row of zeros gets scale 1 (any scale holds it), not 0 (a division by zero).
        scale = (largest / 127).where(largest > 0, torch.ones(()))
        self.q = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
        self.scales = scale.to(weight.dtype)
        self.weight = (self.q.float() * self.scales.float()[:, None]).to(weight.dtype)

    @staticmethod
    def supports(weight: torch.Tensor) -> bool:
        """Whether `weight` can be held in 8 bits here: bfloat16 on the CPU (torch's int8 kernel)."""
        return weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and weight.dim() == 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > INT8_MOST_ROWS:
            return F.linear(x, self.weight)
        y = torch._weight_int8pack_mm(x.reshape(rows, x.shape[-1]), self.q, self.scales)
        return y.view(*x.shape[:-1], y.shape[-1])


Projection = Dense | Int4
# A weight's 4-bit values, and each group's scale and zero point (`_grid`).
Grid = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _grid(weight: torch.Tensor) -> Grid:
    """`weight`'s 4-bit values (out, groups, INT4_GROUP) in 0..15, rounded to nearest as GGUF's Q4_1
    quantizer does (each group's minimum is level 0, its maximum level 15), and each group's
    scale and zero point (out, groups) in the weight's dtype, as the kernel reads them.

    Rounding the scale and zero to bfloat16 moves every value of a group alike (the scale's error
    grows with the level), which a dot product adds up rather than averages out: on the packaged
    model it tipped a close first token ("The" 25.325 against "L" 25.243 in float32). So of the
    bfloat16 neighbours of the exact scale, and of the best zero point for each, the pair that
    reproduces the group's own values with the least squared error is taken.
    """
    out_features, in_features = weight.shape
    groups = weight.detach().float().view(out_features, in_features // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    step = ((high - low) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    q = ((groups - low[..., None]) / step[..., None]).round().clamp(0, 15)
    levels = q - 8
    rounded = step.to(weight.dtype)
    best_error = best_scale = best_zero = None
    for scale in (rounded, _neighbour(rounded, 1), _neighbour(rounded, -1)):
        # The zero point that fits best for this scale: the mean residual, then its neighbours.
        exact_zero = (groups - levels * scale.float()[..., None]).mean(-1)
        near = exact_zero.to(weight.dtype)
        for zero in (near, _neighbour(near, 1), _neighbour(near, -1)):
            error = ((levels * scale.float()[..., None] + zero.float()[..., None] - groups) ** 2).sum(-1)
            if best_error is None:
                best_error, best_scale, best_zero = error, scale, zero
                continue
            better = error < best_error
            best_error = torch.where(better, error, best_error)
            best_scale = torch.where(better, scale, best_scale)
            best_zero = torch.where(better, zero, best_zero)
    return q, best_scale, best_zero


def _neighbour(x: torch.Tensor, direction: int) -> torch.Tensor:
    """The next representable value of `x`'s dtype above (1) or below (-1) each element."""
    return torch.nextafter(x, torch.full_like(x, direction * float("inf")))


def _expand(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """The values (float32) the int4 kernel computes with: (q - 8) * scale + zero, per group."""
    return (q - 8) * scale.float()[..., None] + zero.float()[..., None]


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: Projection  # (q + k + v features, hidden)
    out: Projection
    post_norm: torch.Tensor
    gate_up: Projection  # (2 * intermediate, hidden)
    down: Projection


def _fuse(modules: list[torch.nn.Linear]) -> torch.Tensor:
    """One weight holding `modules`' weights stacked by output feature; each module's weight
    becomes a view of it, so the model keeps working and no memory is added."""
    fused = torch.cat([m.weight.detach() for m in modules], dim=0)
    start = 0
    for module in modules:
        rows = module.weight.shape[0]
        module.weight = torch.nn.Parameter(fused[start : start + rows], requires_grad=False)
        start += rows
    return fused


class FastLlama:
    """Decode and packed prefill for a `LlamaForCausalLM` (the arithmetic of transformers' forward)."""

    def __init__(self, model: PreTrainedModel, *, quantization: Quantization = Quantization.NONE) -> None:
        """`quantization`: which layer projections are held in 4 bits (`Int4`; bfloat16 weights on the
        CPU only): with `auto` those whose weights are on a 4-bit grid already, with `int4` all;
        with either, the output head in 8 bits (`Int8`). The model's own layer weights are
        overwritten with the values they now stand for; the embedding keeps its own."""
        config = model.config

        def projection(weight: torch.Tensor) -> Projection:
            if quantization is Quantization.NONE or not Int4.supports(weight):
                return Dense(weight)
            # Found once: the check and the packing both need it (the fit is most of load's extra time).
            grid = _grid(weight)
            if quantization is Quantization.AUTO and not Int4.on_grid(weight, grid):
                return Dense(weight)
            return Int4(weight, grid)

        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        # The output head in 8 bits (the packaged model's is 8-bit in its GGUF, Q8_0, with a scale
        # per 32 weights; torch's kernel takes one per row): perplexity on bench/inference/accuracy.py's
        # fixed texts 13.38 against 13.51 with the bfloat16 head (float32: 13.48), a decode step of
        # one row 16.8 against 18.4 ms. In 4 bits it saved 3.7 ms but raised perplexity to 14.11
        # (bench/README.md, "Inference", int4).
        head = model.lm_head.weight.detach()
        self.output_head: Dense | Int8 = (
            Int8(head) if quantization is not Quantization.NONE and Int8.supports(head) else Dense(head)
        )
        self.layers = [
            _Layer(
                input_norm=layer.input_layernorm.weight,
                qkv=projection(_fuse([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj])),
                out=projection(layer.self_attn.o_proj.weight.detach()),
                post_norm=layer.post_attention_layernorm.weight,
                gate_up=projection(_fuse([layer.mlp.gate_proj, layer.mlp.up_proj])),
                down=projection(layer.mlp.down_proj.weight.detach()),
            )
            for layer in inner.layers
        ]
        # transformers computes cos/sin per step from inv_freq (float32) and casts them to the
        # activations' dtype; one table over every position gives the same values.
        self.inv_freq = inner.rotary_emb.inv_freq.float().to(self.embed.device)
        self.rotary_scaling = inner.rotary_emb.attention_scaling
        self._rotary_table(config.max_position_embeddings)
        self.split = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]
        projections = [p for layer in self.layers for p in (layer.qkv, layer.out, layer.gate_up, layer.down)]
        self.int4_projections = sum(isinstance(p, Int4) for p in projections)
        held = f"{self.int4_projections}/{len(projections)}"
        head_bits = "int8" if isinstance(self.output_head, Int8) else str(head.dtype).removeprefix("torch.")
        log.info(
            "lean forward ready",
            extra={"quantization": quantization.value, "int4_projections": held, "head": head_bits},
        )

    def _rotary_table(self, positions: int) -> None:
        # INFERENCE_CONTEXT_LENGTH may pass the model's max_position_embeddings: the table grows.
        steps = torch.arange(positions, device=self.embed.device, dtype=torch.float32)
        freqs = torch.outer(steps, self.inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        self.cos = (angles.cos() * self.rotary_scaling).to(self.embed.dtype)
        self.sin = (angles.sin() * self.rotary_scaling).to(self.embed.dtype)

    @staticmethod
    def supports(model: PreTrainedModel) -> bool:
        """Whether `model`'s forward is exactly the arithmetic this class runs."""
        config = model.config
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        return (
            type(model).__name__ == "LlamaForCausalLM"
            and config.hidden_act == "silu"
            and not getattr(config, "attention_bias", False)
            and not getattr(config, "mlp_bias", False)
            and getattr(config, "pretraining_tp", 1) == 1
            and rope.get("rope_type", "default") == "default"
            # Plain projections only: an adapter (LoRA) or quantized layer computes more than its weight.
            and all(
                type(module) is torch.nn.Linear
                for layer in model.model.layers
                for name, module in (*layer.self_attn.named_children(), *layer.mlp.named_children())
                if name.endswith("_proj")
            )
        )

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # As LlamaRMSNorm: the statistics in float32, the scale in the activations' dtype. torch's
        # fused rms_norm gives the same bits as LlamaRMSNorm's five operators (checked in the tests).
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)

    def _qkv(
        self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of `h` (batch, tokens, hidden), rotated: (batch, heads, tokens, dim)."""
        batch, tokens, _ = h.shape
        q, k, v = layer.qkv(self._norm(h, layer.input_norm)).split(self.split, dim=-1)
        q = q.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _rest(self, layer: _Layer, h: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """The layer after attention: output projection, residual, MLP, residual."""
        batch, _, tokens, _ = attention.shape
        h = h + layer.out(attention.transpose(1, 2).reshape(batch, tokens, -1))
        gate, up = layer.gate_up(self._norm(h, layer.post_norm)).chunk(2, dim=-1)
        return h + layer.down(F.silu(gate) * up)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.output_head(self._norm(h, self.norm))

    @torch.inference_mode()
    def decode(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: list[LayerKV]
    ) -> torch.Tensor:
        """One token per row: `tokens` (batch, 1), `positions` (batch,), `mask` (batch, cached + 1)
        with 1 for real tokens. Writes the new keys and values at position `cached` of each
        layer's buffers (their capacity must exceed it); answers the logits (batch, vocab)."""
        batch, length = mask.shape
        if length > len(self.cos):  # every row's position is below the padded length
            self._rotary_table(2 * length)
        groups = self.heads // self.kv_heads
        h = F.embedding(tokens, self.embed)
        cos, sin = self.cos[positions][:, None, :], self.sin[positions][:, None, :]
        # Padding gets -inf before the softmax.
        bias = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        bias = bias.masked_fill(mask == 0, float("-inf"))[:, None, None, :]
        scale = self.head_dim**-0.5
        for layer, kv in zip(self.layers, cache, strict=True):
            qkv = layer.qkv(self._norm(h, layer.input_norm)).view(batch, -1, self.head_dim)
            # Queries and keys are rotated alike, so in one pass (the heads are the middle dimension).
            qk = _rotate(qkv[:, : self.heads + self.kv_heads], cos, sin)
            q = qk[:, : self.heads]
            kv.keys[:, :, length - 1] = qk[:, self.heads :]
            kv.values[:, :, length - 1] = qkv[:, self.heads + self.kv_heads :]
            keys, values = kv.keys[:, :, :length], kv.values[:, :, :length]
            # One query per row: two small matmuls per key/value head beat SDPA's CPU kernel,
            # which is built for long queries (0.26 vs 1.5 ms a layer at 16 rows, 100 positions).
            # In float32, as SDPA accumulates: bfloat16 scores (eager attention) round by up to
            # 0.1 at this model's magnitudes and changed 3 of 8 greedy answers within 32 tokens.
            q = q.view(batch, self.kv_heads, groups, self.head_dim).float()
            scores = torch.matmul(q, keys.float().transpose(-1, -2)) * scale + bias
            weights = torch.softmax(scores, dim=-1)
            attention = torch.matmul(weights, values.float()).to(h.dtype).view(batch, self.heads, 1, self.head_dim)
            h = self._rest(layer, h, attention)
        return self._logits(h[:, -1, :])

    def start_prefill(self, prompts: list[list[int]]) -> PackedPrefill:
        """A prefill of `prompts`, packed end to end, to be run one layer at a time (see `PackedPrefill`)."""
        return PackedPrefill(self, prompts)

    def prefill(self, prompts: list[list[int]]) -> tuple[list[list[LayerKV]], torch.Tensor]:
        """Several prompts in one pass, packed end to end; answers each prompt's one-row cache
        and the logits of every prompt's next token (prompts, vocab)."""
        job = self.start_prefill(prompts)
        while not job.done:
            job.step()
        return job.result()


class PackedPrefill:
    """Prompts prefilled together, packed end to end, one layer at a time.

    Run layer by layer (`step`) so that prompts arriving meanwhile need not wait for the whole
    pass: a second `PackedPrefill` of them, run up to this one's layer, joins it (`absorb`), and
    every later layer reads the weights once for all. Each prompt attends only to itself, so a
    prompt's result is the same whenever it joined (tests/unit/test_inference_engine.py).
    """

    def __init__(self, model: FastLlama, prompts: list[list[int]]) -> None:
        self.model = model
        self.lengths = [len(p) for p in prompts]
        self.layers = len(model.layers)
        self.layer = 0  # layers run so far
        device = model.embed.device
        if max(self.lengths) > len(model.cos):
            model._rotary_table(2 * max(self.lengths))
        with torch.inference_mode():
            ids = torch.tensor([[t for p in prompts for t in p]], dtype=torch.long, device=device)
            positions = torch.cat([torch.arange(n, device=device) for n in self.lengths])
            self.cos, self.sin = model.cos[positions][None, None], model.sin[positions][None, None]
            self.h = F.embedding(ids, model.embed)
        self.caches: list[list[LayerKV]] = [[] for _ in prompts]

    @property
    def tokens(self) -> int:
        """Prompt tokens in this prefill."""
        return sum(self.lengths)

    @property
    def done(self) -> bool:
        """Whether every layer has run (`result` may be read)."""
        return self.layer == self.layers

    @torch.inference_mode()
    def step(self) -> None:
        """Run the next layer for every prompt."""
        model, layer = self.model, self.model.layers[self.layer]
        q, k, v = model._qkv(layer, self.h, self.cos, self.sin)
        parts = []
        start = 0
        for n, cache in zip(self.lengths, self.caches, strict=True):
            qi, ki, vi = q[:, :, start : start + n], k[:, :, start : start + n], v[:, :, start : start + n]
            parts.append(F.scaled_dot_product_attention(qi, ki, vi, is_causal=n > 1, enable_gqa=True))
            cache.append(LayerKV(ki.contiguous(), vi.contiguous()))
            start += n
        self.h = model._rest(layer, self.h, torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
        self.layer += 1

    def absorb(self, other: PackedPrefill) -> None:
        """Take `other`'s prompts, run up to this prefill's layer, in after this one's own."""
        if other.layer != self.layer:
            raise ValueError(f"a prefill at layer {other.layer} cannot join one at layer {self.layer}")
        with torch.inference_mode():
            self.h = torch.cat([self.h, other.h], dim=1)
            self.cos = torch.cat([self.cos, other.cos], dim=2)
            self.sin = torch.cat([self.sin, other.sin], dim=2)
        self.lengths += other.lengths
        self.caches += other.caches

    @torch.inference_mode()
    def result(self) -> tuple[list[list[LayerKV]], torch.Tensor]:
        """Each prompt's one-row cache, and the logits of every prompt's next token (prompts, vocab)."""
        ends = torch.tensor(self.lengths, device=self.h.device).cumsum(0) - 1
        return self.caches, self.model._logits(self.h[0, ends, :])


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
