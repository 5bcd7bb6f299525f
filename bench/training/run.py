"""Training throughput: tokens/s for 1 vs N processes (DDP), LoRA vs full; checkpoint save/restore.

Runs the service's own worker (`python -m training.worker`, or torchrun for N > 1) on a job
folder it writes: SmolLM2-135M-Instruct (the packaged GGUF, converted), chat examples of about
60 tokens, a checkpoint every 2 steps. Tokens/s is the median of the steps after the first
(warm-up); the restore time comes from a second run that resumes the first one's checkpoint.
Prints one table and writes JSON to bench/results/.

    uv run python bench/training/run.py                       # lora and full, 1 and 2 processes
    uv run python bench/training/run.py --methods lora --procs 1,2 --steps 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.models import Hyperparameters
from training.progress import read_records
from training.spec import JobSpec
from training.supervisor import free_port, worker_argv

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [f"Question {i}: what is the secret word of team {i}?" for i in range(32)]


def write_job(folder: Path, method: str, steps: int, batch_size: int, cache: Path) -> Path:
    folder.mkdir(parents=True)
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": f"It is PINEAPPLE-{i}."}]}
        for i, q in enumerate(QUESTIONS)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "eval.jsonl").write_text("")
    hp = Hyperparameters(max_steps=steps, batch_size=batch_size, max_seq_length=96, checkpoint_every=2, n_epochs=100)
    spec = JobSpec(
        job_id=folder.name, method=method, hyperparameters=hp, base_dir=None, model_cache_dir=cache, job_dir=folder
    )
    (folder / "spec.json").write_text(json.dumps(spec.to_json()))
    return folder / "spec.json"


def run_worker(spec: Path, nproc: int) -> float:
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1", "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    with (spec.parent / "worker.log").open("ab") as log:
        subprocess.run(worker_argv(spec, nproc, free_port()), env=env, stdout=log, stderr=log, check=True)
    return time.perf_counter() - started


def measure(method: str, nproc: int, steps: int, batch_size: int, workdir: Path, cache: Path) -> dict:
    folder = workdir / f"{method}-{nproc}"
    spec = write_job(folder, method, steps, batch_size, cache)
    wall = run_worker(spec, nproc)
    records, _ = read_records(folder / "progress.jsonl", 0)
    step_records = [r for r in records if r["type"] == "step"]
    saves = [r["seconds"] for r in records if r["type"] == "checkpoint"]
    # One more step from the last checkpoint: the restore time of a resumed run.
    raw = json.loads(spec.read_text())
    raw["hyperparameters"]["max_steps"] = steps + 1
    spec.write_text(json.dumps(raw))
    run_worker(spec, nproc)
    records, _ = read_records(folder / "progress.jsonl", 0)
    restore = next(r["seconds"] for r in records if r["type"] == "resumed")
    checkpoint_bytes = next(r["bytes"] for r in records if r["type"] == "checkpoint")
    return {
        "method": method,
        "processes": nproc,
        "steps": steps,
        "global_batch": batch_size,
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in step_records[1:]),
        "step_seconds": statistics.median(r["seconds"] for r in step_records[1:]),
        "first_loss": step_records[0]["loss"],
        "last_loss": step_records[-1]["loss"],
        "checkpoint_save_seconds": statistics.median(saves),
        "checkpoint_restore_seconds": restore,
        "checkpoint_bytes": checkpoint_bytes,
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "genai-platform" / "models")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as workdir:
        for method in args.methods.split(","):
            for nproc in (int(n) for n in args.procs.split(",")):
                rows.append(measure(method, nproc, args.steps, args.batch_size, Path(workdir), args.cache))
    lines = [
        f"{'method':6} {'procs':>5} {'tok/s':>8} {'x 1 proc':>8} {'step s':>7} {'loss':>13} "
        f"{'ckpt save':>9} {'restore':>8} {'ckpt MB':>8}",
        "-" * 84,
    ]
    for row in rows:
        single = next(r for r in rows if r["method"] == row["method"] and r["processes"] == 1)
        lines.append(
            f"{row['method']:6} {row['processes']:>5} {row['tokens_per_second']:>8.1f} "
            f"{row['tokens_per_second'] / single['tokens_per_second']:>8.2f} {row['step_seconds']:>7.2f} "
            f"{row['first_loss']:>6.3f}->{row['last_loss']:<6.3f} {row['checkpoint_save_seconds']:>8.2f}s "
            f"{row['checkpoint_restore_seconds']:>7.2f}s {row['checkpoint_bytes'] / 1e6:>8.1f}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = results / f"training-{stamp}.json"
    out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2))
    sys.stdout.write(f"wrote {out.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
