"""Settings of the training service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class TrainingSettings(ServiceSettings):
    app_id: str = Field("training", validation_alias="APP_ID")
    port: int = Field(8103, validation_alias="APP_PORT")
