"""The output head in 8 bits (`inference.llama.Int8`): each row within half a step of its weights,
the int8 kernel (few rows) and the bfloat16 copy (many rows) computing with the same values, the
tied embedding left as it was, and which settings hold the head so."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from inference.llama import INT8_MOST_ROWS, Dense, FastLlama, Int8
from inference.settings import Quantization


def test_each_row_is_held_within_half_a_step_and_the_weight_is_left_as_it_was() -> None:
    weight = (torch.randn(96, 64) * torch.logspace(-3, 1, 96)[:, None]).to(torch.bfloat16)
    weight[5] = 0  # a row of zeros: scale 1, not a division by zero
    before = weight.clone()
    head = Int8(weight)
    assert torch.equal(weight, before)  # the embedding it is tied to keeps its values
    assert head.q.dtype == torch.int8 and int(head.q.abs().max()) == 127
    w = before.float()
    step = w.abs().amax(dim=1, keepdim=True) / 127
    held = head.q.float() * head.scales.float()[:, None]
    # Half a step of rounding, plus the scale's own rounding to bfloat16 (2**-9 of the largest value).
    assert ((held - w).abs() <= step / 2 + w.abs().amax(dim=1, keepdim=True) * 2**-8).all()
    assert torch.equal(held[5], torch.zeros(64)) and float(head.scales[5]) == 1.0
    assert (held - w).abs().max() > 0  # random weights are not on an 8-bit grid: something moved


@pytest.mark.parametrize("rows", [1, 3, INT8_MOST_ROWS, INT8_MOST_ROWS + 1, 40])
def test_the_kernel_and_the_copy_compute_with_the_same_values(rows: int) -> None:
    head = Int8(torch.randn(200, 64).to(torch.bfloat16))
    x = torch.randn(rows, 1, 64).to(torch.bfloat16)
    expected = F.linear(x.float(), head.weight.float())
    got = head(x)
    assert got.shape == (rows, 1, 200) and got.dtype == torch.bfloat16
    # bfloat16 output: 8 significant bits.
    torch.testing.assert_close(got.float(), expected, rtol=2**-7, atol=2**-7 * expected.abs().max().item())


def test_only_bfloat16_cpu_weights_are_taken() -> None:
    assert Int8.supports(torch.zeros(8, 64, dtype=torch.bfloat16))
    assert not Int8.supports(torch.zeros(8, 64))  # float32: the serving dtype stays


def test_auto_and_int4_hold_the_head_in_8_bits_and_none_keeps_it(tiny_llama) -> None:
    model, _ = tiny_llama
    model = copy.deepcopy(model).to(torch.bfloat16)
    for quantization in (Quantization.AUTO, Quantization.INT4):
        fast = FastLlama(copy.deepcopy(model), quantization=quantization)
        assert isinstance(fast.output_head, Int8), quantization
    kept = FastLlama(copy.deepcopy(model), quantization=Quantization.NONE)
    assert isinstance(kept.output_head, Dense) and torch.equal(kept.output_head.weight, model.lm_head.weight)
    assert isinstance(FastLlama(copy.deepcopy(model).float(), quantization=Quantization.AUTO).output_head, Dense)
