"""Settings of the ui service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class UiSettings(ServiceSettings):
    app_id: str = Field("ui", validation_alias="APP_ID")
    port: int = Field(8090, validation_alias="APP_PORT")
