"""Settings of the prompts service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class PromptsSettings(ServiceSettings):
    app_id: str = Field("prompts", validation_alias="APP_ID")
    port: int = Field(8106, validation_alias="APP_PORT")
