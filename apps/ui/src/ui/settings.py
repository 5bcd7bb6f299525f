"""Settings of the ui service."""

from pydantic import Field, SecretStr

from genai_platform.contracts.documents import MAX_DOCUMENT_BYTES
from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS
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
    # Largest file the Documents page relays: the platform's largest document (10 MiB,
    # genai_platform.contracts.documents), as ingestion and the gateway's upload limit take it; the
    # page refuses a larger file before sending it. Raise it with INGESTION_MAX_BYTES and
    # GATEWAY_MAX_UPLOAD_BODY_BYTES.
    max_upload_bytes: int = Field(MAX_DOCUMENT_BYTES, ge=1, validation_alias="UI_MAX_UPLOAD_BYTES")
    # The chat page's "Longest answer" field: at most the platform's one figure for an answer's
    # tokens (genai_platform.contracts.openai), as the gateway (GATEWAY_MAX_TOKENS) and inference
    # (INFERENCE_MAX_TOKENS) take it; a larger value is refused when asked, never after a 202.
    max_tokens: int = Field(MAX_COMPLETION_TOKENS, ge=1, validation_alias="UI_MAX_TOKENS")
