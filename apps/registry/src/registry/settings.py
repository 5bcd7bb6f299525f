"""Settings of the registry service."""

from pathlib import Path

from pydantic import Field

from genai_platform.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    """The registry service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("registry", validation_alias="APP_ID")
    port: int = Field(8104, validation_alias="APP_PORT")
    # The output binding artifacts are stored through (components/blobstore.yaml).
    blob_binding: str = Field("blobstore", validation_alias="REGISTRY_BLOB_BINDING")
    # Parts stay under the sidecars' default 4 MiB body limit once base64-encoded for the binding.
    part_size_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=3 * 1024 * 1024, validation_alias="REGISTRY_PART_SIZE")
    # A safetensors model folder registered as version 1 (alias production) of `seed_model`
    # when that model has no ready version 1 yet; unset: nothing is seeded.
    seed_dir: Path | None = Field(None, validation_alias="REGISTRY_SEED_DIR")
    seed_model: str = Field("smollm2-135m-instruct", validation_alias="REGISTRY_SEED_MODEL")
