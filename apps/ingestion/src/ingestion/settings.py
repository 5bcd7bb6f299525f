"""Settings of the ingestion service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class IngestionSettings(ServiceSettings):
    app_id: str = Field("ingestion", validation_alias="APP_ID")
    port: int = Field(8101, validation_alias="APP_PORT")
