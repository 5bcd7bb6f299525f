"""Settings of the features service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class FeaturesSettings(ServiceSettings):
    app_id: str = Field("features", validation_alias="APP_ID")
    port: int = Field(8102, validation_alias="APP_PORT")
