"""Settings of the gateway service."""

from genai_platform.settings import ServiceSettings
from pydantic import Field


class GatewaySettings(ServiceSettings):
    app_id: str = Field("gateway", validation_alias="APP_ID")
    port: int = Field(8080, validation_alias="APP_PORT")
