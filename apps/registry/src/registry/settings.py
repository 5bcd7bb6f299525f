"""Settings of the registry service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    app_id: str = Field("registry", validation_alias="APP_ID")
    port: int = Field(8104, validation_alias="APP_PORT")
