"""Settings of the registry service."""

from genai_platform.settings import ServiceSettings
from pydantic import Field


class RegistrySettings(ServiceSettings):
    app_id: str = Field("registry", validation_alias="APP_ID")
    port: int = Field(8104, validation_alias="APP_PORT")
