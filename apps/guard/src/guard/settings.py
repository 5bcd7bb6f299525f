"""Settings of the guard service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class GuardSettings(ServiceSettings):
    app_id: str = Field("guard", validation_alias="APP_ID")
    port: int = Field(8107, validation_alias="APP_PORT")
