"""Settings of the features service."""

from genai_platform.settings import ServiceSettings
from pydantic import Field


class FeaturesSettings(ServiceSettings):
    app_id: str = Field("features", validation_alias="APP_ID")
    port: int = Field(8102, validation_alias="APP_PORT")
