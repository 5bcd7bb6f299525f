"""Settings of the registry service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    app_id: str = Field("registry", validation_alias="APP_ID")
    port: int = Field(8104, validation_alias="APP_PORT")
    # The output binding artifacts are stored through (components/blobstore.yaml).
    blob_binding: str = Field("blobstore", validation_alias="REGISTRY_BLOB_BINDING")
    # Parts stay under the sidecars' default 4 MiB body limit once base64-encoded for the binding.
    part_size_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=3 * 1024 * 1024, validation_alias="REGISTRY_PART_SIZE")
