"""Weight-only int4 (`inference.llama.Int4`): a 4-bit grid is held without loss, the int4 kernel
(few rows) and the bfloat16 expansion (many rows) compute with one set of weights, and the engine
batches int4 rows exactly as it batches dense ones."""

from __future__ import annotations

import asyncio
import copy

import pytest
import torch
import torch.nn.functional as F

from inference import batch as kv
from inference.decoding import SamplingParams
from inference.engine import Engine, Finished
from inference.llama import INT4_GROUP, INT4_MOST_ROWS, Dense, FastLlama, Int4
from inference.model import LoadedModel
from inference.settings import PACKAGED_MODEL, Quantization

CPU = torch.device("cpu")


def grid_weight(out_features: int, in_features: int, seed: int = 0) -> torch.Tensor:
    """A bfloat16 weight on a 4-bit grid, as a Q4_1 GGUF's layers are: per group of 32 inputs,
    w = (q - m) * 2**-e with q in 0..15 and every value exact in bfloat16."""
    generator = torch.Generator().manual_seed(seed)
    groups = in_features // INT4_GROUP
    q = torch.randint(0, 16, (out_features, groups, INT4_GROUP), generator=generator)
    q[..., 0], q[..., 1] = 0, 15  # the grid's ends occur in every group, as Q4_1's quantizer makes them
    shift = torch.randint(0, 16, (out_features, groups, 1), generator=generator)
    exponent = torch.randint(4, 9, (out_features, groups, 1), generator=generator)
    return ((q - shift).float() * 2.0 ** (-exponent.float())).view(out_features, in_features).to(torch.bfloat16)


def test_a_4bit_grid_is_held_without_loss() -> None:
    weight = grid_weight(96, 128)
    before = weight.clone()
    Int4(weight)
    assert torch.equal(weight, before)


def test_other_weights_round_to_their_group_grid() -> None:
    weight = torch.randn(64, 96).to(torch.bfloat16)
    before = weight.float().view(64, -1, INT4_GROUP)
    Int4(weight)
    after = weight.float().view(64, -1, INT4_GROUP)
    low, high = before.amin(-1, keepdim=True), before.amax(-1, keepdim=True)
    step = (high - low) / 15
    # 16 levels per group at most, each value within one step of where it was.
    assert max(len(torch.unique(group)) for group in after.reshape(-1, INT4_GROUP)) <= 16
    assert ((after - before).abs() <= step).all()
    assert (after - before).abs().max() > 0  # random weights are not on a grid: something moved
    # The scale and zero are fitted: no worse than GGUF's plain rounding with both in bfloat16.
    plain_scale = step.to(torch.bfloat16).float()
    plain_zero = (low + 8 * plain_scale).to(torch.bfloat16).float()
    q = ((before - low) / step).round().clamp(0, 15)
    plain = (q - 8) * plain_scale + plain_zero
    assert ((after - before) ** 2).sum() <= ((plain.to(torch.bfloat16).float() - before) ** 2).sum()


@pytest.mark.parametrize("rows", [1, 3, INT4_MOST_ROWS, INT4_MOST_ROWS + 1, 40])
def test_the_kernel_and_the_expansion_compute_with_the_same_weights(rows: int) -> None:
    weight = grid_weight(160, 192, seed=1)
    projection = Int4(weight.clone())
    x = torch.randn(rows, 1, 192).to(torch.bfloat16)
    expected = F.linear(x.float(), weight.float())
    got = projection(x)
    assert got.shape == (rows, 1, 160) and got.dtype == torch.bfloat16
    # bfloat16 output: 8 significant bits.
    torch.testing.assert_close(got.float(), expected, rtol=2**-7, atol=2**-7 * expected.abs().max().item())


def test_only_bfloat16_cpu_weights_in_whole_groups_are_taken() -> None:
    assert Int4.supports(torch.zeros(8, 64, dtype=torch.bfloat16))
    assert not Int4.supports(torch.zeros(8, 64))  # float32: torch's slow path
    assert not Int4.supports(torch.zeros(8, 48, dtype=torch.bfloat16))  # 48 is not whole groups of 32


def test_auto_takes_the_weights_already_on_a_4bit_grid_and_int4_takes_all(tiny_llama) -> None:
    model, _ = tiny_llama
    model = copy.deepcopy(model).to(torch.bfloat16)
    layers = model.model.layers
    with torch.no_grad():  # layer 0 on a grid, as a Q4_1 model; layer 1 random, as a fine-tune
        for module in (layers[0].self_attn.o_proj, layers[0].mlp.down_proj):
            module.weight.copy_(grid_weight(*module.weight.shape, seed=2))
    auto = FastLlama(copy.deepcopy(model), quantization=Quantization.AUTO)
    assert isinstance(auto.layers[0].out, Int4) and isinstance(auto.layers[0].down, Int4)
    assert isinstance(auto.layers[1].out, Dense) and isinstance(auto.layers[1].down, Dense)
    assert auto.int4_projections == 2
    assert FastLlama(copy.deepcopy(model), quantization=Quantization.INT4).int4_projections == 8
    assert FastLlama(copy.deepcopy(model), quantization=Quantization.NONE).int4_projections == 0
    # float32 weights stay dense: torch's int4 kernel is slow for float32 activations.
    assert FastLlama(copy.deepcopy(model).float(), quantization=Quantization.INT4).int4_projections == 0


def test_the_packaged_models_layers_are_on_a_4bit_grid() -> None:
    # What `auto` serves: the packaged Q4_1 GGUF, converted to safetensors (also the registry's
    # base version), loaded in bfloat16. Every layer projection is on the grid: all held in 4 bits.
    from safetensors.torch import load_file

    from inference.model import resolve_source
    from inference.settings import InferenceSettings

    folder = resolve_source(PACKAGED_MODEL, InferenceSettings.model_fields["model_cache_dir"].default)
    weights = load_file(folder / "model.safetensors")
    layers = [w for name, w in weights.items() if name.startswith("model.layers.") and w.dim() == 2]
    assert len(layers) == 30 * 7
    assert all(Int4.on_grid(w.to(torch.bfloat16)) for w in layers)
    # The output head (the embedding, Q8_0 in the GGUF) is not: 256 levels a group.
    assert not Int4.on_grid(weights["model.embed_tokens.weight"].to(torch.bfloat16))


@pytest.fixture(scope="module")
def tiny_int4(tiny_llama) -> LoadedModel:
    """The tiny random Llama in bfloat16, its layers held in 4 bits."""
    model, tokenizer = tiny_llama
    model = copy.deepcopy(model).to(torch.bfloat16)
    return LoadedModel(
        "tiny", "1", "memory", model, tokenizer, CPU, torch.bfloat16, 256, frozenset({2}), 2, Quantization.INT4
    )


def test_the_int4_forward_computes_what_the_dense_forward_computes_on_its_weights(tiny_int4: LoadedModel) -> None:
    fast = tiny_int4.forward
    assert isinstance(fast, FastLlama)
    assert all(isinstance(layer.qkv, Int4) and isinstance(layer.down, Int4) for layer in fast.layers)
    # Int4 overwrote the model's weights with the values it holds: a dense forward over them is the reference.
    dense = FastLlama(copy.deepcopy(tiny_int4.model), quantization=Quantization.NONE)
    assert isinstance(dense.layers[0].qkv, Dense)
    dense.output_head = Dense(fast.output_head.weight)  # the 8-bit head's values (tests/unit/test_inference_int8.py)
    prompt = tiny_int4.encode_chat([{"role": "user", "content": "What is the capital of France?"}])
    fed = [5, 17, 230, 1000, 42, 7, 99, 3]
    steps = []
    for forward in (fast, dense):
        batch, logits = kv.prefill(forward, [prompt])
        out = [logits]
        for token in fed:  # the same tokens into both, so one rounding cannot steer the other
            kv.set_next_tokens(batch, [token])
            out.append(kv.decode(forward, batch))
        steps.append(torch.cat(out).float())
    got, expected = steps
    torch.testing.assert_close(got, expected, rtol=0.02, atol=0.02 * expected.abs().max().item())


def test_int4_rows_batch_exactly_as_alone(tiny_int4: LoadedModel) -> None:
    greedy = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    texts = ["Hi", "What is the capital of France?", "Write a long poem about the sea and the sky, please."]
    prompts = [tiny_int4.encode_chat([{"role": "user", "content": t}]) for t in texts]

    async def run(size: int) -> list[tuple[str, Finished]]:
        engine = Engine(tiny_int4, max_batch_size=size).start()
        try:
            if size == 1:
                return [await engine.submit(p, greedy).text() for p in prompts]
            return list(await asyncio.gather(*(engine.submit(p, greedy).text() for p in prompts)))
        finally:
            engine.stop()

    assert asyncio.run(run(8)) == asyncio.run(run(1))


def test_the_lean_norm_gives_llama_rmsnorms_bits(tiny_llama) -> None:
    # The lean forward's norm is torch's fused rms_norm; transformers' LlamaRMSNorm is five
    # operators. Same statistics in float32, same rounding: the same bits in bfloat16.
    model, _ = tiny_llama
    model = copy.deepcopy(model).to(torch.bfloat16)
    fast = FastLlama(model)
    reference = model.model.layers[0].input_layernorm
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a scale other than the initial ones
        reference.weight.copy_(torch.randn(64, generator=generator))
    for rows in (1, 16, 200):
        x = (torch.randn(rows, 1, 64, generator=generator) * 3).to(torch.bfloat16)
        assert torch.equal(fast._norm(x, reference.weight), reference(x))
