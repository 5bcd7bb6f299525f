"""Settings of the inference service."""

from genai_platform.settings import ServiceSettings
from pydantic import Field


class InferenceSettings(ServiceSettings):
    app_id: str = Field("inference", validation_alias="APP_ID")
    port: int = Field(8105, validation_alias="APP_PORT")
