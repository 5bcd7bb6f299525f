"""What the API process hands a worker: the job's spec.json, and the exit codes it reads back.

Kept apart from the worker so the API process never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.models import Hyperparameters

# Exit codes the supervisor tells apart from a failure.
EXIT_STOPPED = 3  # cancelled, or the owning app is gone: the job is not failed


@dataclass(frozen=True)
class JobSpec:
    """What the API process hands a worker, as spec.json in the job folder."""

    job_id: str
    method: str
    hyperparameters: Hyperparameters
    # A Hugging Face folder (a registry version, downloaded); None: the packaged GGUF, converted.
    base_dir: Path | None
    model_cache_dir: Path
    job_dir: Path
    output_dtype: str = "float32"
    device: str = "auto"
    torch_threads: int = 0

    @property
    def train_path(self) -> Path:
        """The training examples (JSON Lines) in the job folder."""
        return self.job_dir / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        """The validation examples (JSON Lines), when the job has any."""
        return self.job_dir / "eval.jsonl"

    @property
    def progress_path(self) -> Path:
        """The worker's progress records (training.progress)."""
        return self.job_dir / "progress.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        """Where the worker keeps its checkpoints, one `step-<n>` folder each."""
        return self.job_dir / "checkpoints"

    @property
    def output_dir(self) -> Path:
        """Where the worker exports the trained model (a Hugging Face folder)."""
        return self.job_dir / "output"

    @classmethod
    def read(cls, path: Path) -> JobSpec:
        """The spec a `to_json` wrote at `path`."""
        raw = json.loads(path.read_text())
        return cls(
            job_id=raw["job_id"],
            method=raw["method"],
            hyperparameters=Hyperparameters(**raw["hyperparameters"]),
            base_dir=Path(raw["base_dir"]) if raw.get("base_dir") else None,
            model_cache_dir=Path(raw["model_cache_dir"]),
            job_dir=Path(raw["job_dir"]),
            output_dtype=raw.get("output_dtype", "float32"),
            device=raw.get("device", "auto"),
            torch_threads=raw.get("torch_threads", 0),
        )

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-ready values (paths as strings), as `read` takes it back."""
        return {
            "job_id": self.job_id,
            "method": self.method,
            "hyperparameters": self.hyperparameters.model_dump(),
            "base_dir": str(self.base_dir) if self.base_dir else None,
            "model_cache_dir": str(self.model_cache_dir),
            "job_dir": str(self.job_dir),
            "output_dtype": self.output_dtype,
            "device": self.device,
            "torch_threads": self.torch_threads,
        }
