"""A lean forward pass for Llama-family decoders (SmolLM2 is one), built for the engine's batch.

transformers' `LlamaForCausalLM.forward` is general: per step it builds 4-D masks, rotary
tables, cache bookkeeping and seven projections per layer, about 2,000 operators from Python
for one decode step of SmolLM2-135M. This module runs the same arithmetic with what the engine
needs only: the query/key/value projections fused into one matmul and gate/up into another
(the model's own weights become views of the fused tensors, so no memory is added), rotary
tables computed once, and SDPA attention with key/value head sharing. It also prefills several
prompts in one pass (packed end to end: every projection sees all their tokens at once, and
attention runs per prompt so none sees another's tokens).

Only models whose forward is exactly this are taken (`FastLlama.supports`); any other
architecture keeps transformers' forward (`inference.batch` chooses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel


@dataclass
class LayerKV:
    """One layer's cached keys and values: (batch, key/value heads, capacity, head dim) buffers,
    of which the batch's first `length` positions are filled (the rest is room to decode into)."""

    keys: torch.Tensor
    values: torch.Tensor


@dataclass
class _Layer:
    input_norm: torch.Tensor
    qkv: torch.Tensor  # (q + k + v features, hidden)
    out: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor  # (2 * intermediate, hidden)
    down: torch.Tensor


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

    def __init__(self, model: PreTrainedModel) -> None:
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = [
            _Layer(
                input_norm=layer.input_layernorm.weight,
                qkv=_fuse([layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj]),
                out=layer.self_attn.o_proj.weight,
                post_norm=layer.post_attention_layernorm.weight,
                gate_up=_fuse([layer.mlp.gate_proj, layer.mlp.up_proj]),
                down=layer.mlp.down_proj.weight,
            )
            for layer in inner.layers
        ]
        # transformers computes cos/sin per step from inv_freq (float32) and casts them to the
        # activations' dtype; one table over every position gives the same values.
        self.inv_freq = inner.rotary_emb.inv_freq.float().to(self.embed.device)
        self.rotary_scaling = inner.rotary_emb.attention_scaling
        self._rotary_table(config.max_position_embeddings)
        self.split = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]

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
        # As LlamaRMSNorm: the statistics in float32, the scale in the activations' dtype.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def _qkv(
        self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of `h` (batch, tokens, hidden), rotated: (batch, heads, tokens, dim)."""
        batch, tokens, _ = h.shape
        q, k, v = F.linear(self._norm(h, layer.input_norm), layer.qkv).split(self.split, dim=-1)
        q = q.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, tokens, self.kv_heads, self.head_dim).transpose(1, 2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _rest(self, layer: _Layer, h: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """The layer after attention: output projection, residual, MLP, residual."""
        batch, _, tokens, _ = attention.shape
        h = h + F.linear(attention.transpose(1, 2).reshape(batch, tokens, -1), layer.out)
        gate, up = F.linear(self._norm(h, layer.post_norm), layer.gate_up).chunk(2, dim=-1)
        return h + F.linear(F.silu(gate) * up, layer.down)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self._norm(h, self.norm), self.lm_head)

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
            q, k, v = F.linear(self._norm(h, layer.input_norm), layer.qkv).split(self.split, dim=-1)
            q = _rotate(q.view(batch, self.heads, self.head_dim), cos, sin)
            kv.keys[:, :, length - 1] = _rotate(k.view(batch, self.kv_heads, self.head_dim), cos, sin)
            kv.values[:, :, length - 1] = v.view(batch, self.kv_heads, self.head_dim)
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

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]]) -> tuple[list[list[LayerKV]], torch.Tensor]:
        """Several prompts in one pass, packed end to end; answers each prompt's one-row cache
        and the logits of every prompt's next token (prompts, vocab)."""
        device = self.embed.device
        lengths = [len(p) for p in prompts]
        if max(lengths) > len(self.cos):
            self._rotary_table(2 * max(lengths))
        ids = torch.tensor([[t for p in prompts for t in p]], dtype=torch.long, device=device)
        positions = torch.cat([torch.arange(n, device=device) for n in lengths])
        cos, sin = self.cos[positions][None, None], self.sin[positions][None, None]
        h = F.embedding(ids, self.embed)
        caches: list[list[LayerKV]] = [[] for _ in prompts]
        for layer in self.layers:
            q, k, v = self._qkv(layer, h, cos, sin)
            parts = []
            start = 0
            for n, cache in zip(lengths, caches, strict=True):
                qi, ki, vi = q[:, :, start : start + n], k[:, :, start : start + n], v[:, :, start : start + n]
                parts.append(F.scaled_dot_product_attention(qi, ki, vi, is_causal=n > 1, enable_gqa=True))
                cache.append(LayerKV(ki.contiguous(), vi.contiguous()))
                start += n
            h = self._rest(layer, h, torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
        ends = torch.tensor(lengths, device=device).cumsum(0) - 1
        return caches, self._logits(h[0, ends, :])


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
