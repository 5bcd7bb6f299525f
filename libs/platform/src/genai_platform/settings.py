"""Typed settings every service shares; each service subclasses them with its own fields."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that mean "nobody set this": refused outside development.
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "password", "token", "dev"}


class Environment(StrEnum):
    """Where a service runs: outside `dev`, placeholder tokens are refused at start."""

    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """Settings read from the environment once, at start-up.

    Dapr's own variables (`DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `DAPR_API_TOKEN`, `APP_API_TOKEN`, `APP_PORT`) keep
    their names so the CLI, the Kubernetes injector and our test harness set them alike.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    app_id: str = Field(validation_alias="APP_ID")
    environment: Environment = Field(Environment.DEV, validation_alias="PLATFORM_ENV")
    host: str = Field("127.0.0.1", validation_alias="APP_HOST")
    port: int = Field(validation_alias="APP_PORT")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")

    dapr_host: str = Field("127.0.0.1", validation_alias="DAPR_HOST")
    dapr_http_port: int = Field(3500, validation_alias="DAPR_HTTP_PORT")
    # Dapr Workflow's SDK talks gRPC to the sidecar (a long-lived work-item stream).
    dapr_grpc_port: int = Field(50001, validation_alias="DAPR_GRPC_PORT")
    dapr_api_token: SecretStr | None = Field(None, validation_alias="DAPR_API_TOKEN")
    app_api_token: SecretStr | None = Field(None, validation_alias="APP_API_TOKEN")

    pubsub_name: str = Field("pubsub", validation_alias="PUBSUB_NAME")
    state_store: str = Field("statestore", validation_alias="STATE_STORE")
    secret_store: str = Field("secretstore", validation_alias="SECRET_STORE")

    # Where this app sends its own spans; the sidecars send theirs to the same Zipkin.
    zipkin_endpoint: str | None = Field("http://127.0.0.1:9411/api/v2/spans", validation_alias="ZIPKIN_ENDPOINT")

    @property
    def dapr_url(self) -> str:
        """The base URL of this app's daprd HTTP API (on loopback unless DAPR_HOST says otherwise)."""
        return f"http://{self.dapr_host}:{self.dapr_http_port}"

    @model_validator(mode="after")
    def _refuse_placeholder_tokens(self) -> Self:
        if self.environment is Environment.DEV:
            return self
        for name in ("dapr_api_token", "app_api_token"):
            value = getattr(self, name)
            if value is None or value.get_secret_value().strip().lower() in _PLACEHOLDERS:
                raise ValueError(f"{name.upper()} must be set to a real secret in {self.environment}")
        return self
