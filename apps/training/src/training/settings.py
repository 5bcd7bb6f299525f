"""Settings of the training service."""

from pathlib import Path

from pydantic import Field

from genai_platform.settings import ServiceSettings


class TrainingSettings(ServiceSettings):
    """The training service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("training", validation_alias="APP_ID")
    port: int = Field(8103, validation_alias="APP_PORT")

    # Job folders (spec, dataset copy, progress file, checkpoints, output) live here; a job is
    # resumed after a crash only by an app that sees the same folder.
    data_dir: Path = Field(Path(".data") / "training", validation_alias="TRAINING_DATA_DIR")
    # Packaged GGUF files are converted once to safetensors here (shared with inference).
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "genai-platform" / "models", validation_alias="TRAINING_MODEL_CACHE"
    )
    # An uploaded training file is kept in Dapr state: it must fit one state write (and the
    # sidecar's 4 MiB request limit with its JSON envelope).
    max_file_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=3 * 1024 * 1024, validation_alias="TRAINING_MAX_FILE")
    # The app-id of the model registry, reached through Dapr service invocation.
    registry_app_id: str = Field("registry", validation_alias="TRAINING_REGISTRY_APP_ID")
    # The app-id of the ingestion service, whose collections can be training data.
    ingestion_app_id: str = Field("ingestion", validation_alias="TRAINING_INGESTION_APP_ID")
    # How often a fine-tune-and-promote workflow checks its job when no "job finished" event came.
    workflow_poll_s: float = Field(30.0, gt=0, validation_alias="TRAINING_WORKFLOW_POLL")
    # Bytes per uploaded part: the registry's own part size (REGISTRY_PART_SIZE) must match.
    registry_part_size: int = Field(2 * 1024 * 1024, ge=1024, validation_alias="TRAINING_REGISTRY_PART_SIZE")
    # Device the workers train on: auto (CUDA when present), cpu, cuda.
    device: str = Field("auto", validation_alias="TRAINING_DEVICE")
    # Intra-op threads per worker process on CPU; 0 keeps torch's default.
    torch_threads: int = Field(0, ge=0, validation_alias="TRAINING_TORCH_THREADS")
    # Jobs running at once on this node; further jobs wait as `queued`.
    max_running_jobs: int = Field(1, ge=1, validation_alias="TRAINING_MAX_RUNNING_JOBS")
    # How often the supervisor reads the workers' progress files.
    poll_interval_s: float = Field(0.5, gt=0, validation_alias="TRAINING_POLL_INTERVAL")
