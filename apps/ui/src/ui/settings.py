"""Settings of the ui service."""

from pydantic import Field, SecretStr

from genai_platform.settings import ServiceSettings


class UiSettings(ServiceSettings):
    app_id: str = Field("ui", validation_alias="APP_ID")
    port: int = Field(8090, validation_alias="APP_PORT")
    # The one app the ui calls (through its own sidecar): every page's data comes from the public API.
    gateway_app_id: str = Field("gateway", validation_alias="UI_GATEWAY_APP_ID")
    # Signs the session id cookie. Unset: a random key is made once and kept in the state store,
    # so every replica and restart shares it.
    session_secret: SecretStr | None = Field(None, validation_alias="UI_SESSION_SECRET")
    # A session (the API key it holds) ends this long after sign-in (seconds).
    session_ttl_seconds: int = Field(8 * 3600, ge=60, validation_alias="UI_SESSION_TTL_SECONDS")
    # Finished chat answers are kept this long, so a reload shows them whole (seconds).
    answer_ttl_seconds: int = Field(24 * 3600, ge=60, validation_alias="UI_ANSWER_TTL_SECONDS")
    request_timeout_seconds: float = Field(30.0, gt=0, validation_alias="UI_REQUEST_TIMEOUT_SECONDS")
    generation_timeout_seconds: float = Field(300.0, gt=0, validation_alias="UI_GENERATION_TIMEOUT_SECONDS")
    # Largest file the Documents page relays: under daprd's default 4 MiB request body (the ui's and the
    # gateway's sidecars), with room for the multipart framing. Raise it with the sidecars' --max-body-size.
    max_upload_bytes: int = Field(4_000_000, ge=1, validation_alias="UI_MAX_UPLOAD_BYTES")
