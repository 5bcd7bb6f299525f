"""Settings of the gateway."""

from pydantic import Field

from genai_platform.contracts.documents import MAX_UPLOAD_BODY_BYTES
from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS
from genai_platform.settings import ServiceSettings

PLATFORM_APPS = ("ingestion", "features", "training", "registry", "inference", "prompts", "guard", "ui", "monitor")


class GatewaySettings(ServiceSettings):
    """The gateway service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("gateway", validation_alias="APP_ID")
    port: int = Field(8080, validation_alias="APP_PORT")
    # The secret (in the Dapr secret store) holding the comma-separated API keys.
    api_keys_secret: str = Field("gateway-api-keys", validation_alias="GATEWAY_API_KEYS_SECRET")
    # Keys are re-read this often, so a rotated key takes effect without a restart.
    api_keys_ttl_seconds: float = Field(60.0, validation_alias="GATEWAY_API_KEYS_TTL_SECONDS")
    platform_apps: tuple[str, ...] = Field(PLATFORM_APPS, validation_alias="GATEWAY_PLATFORM_APPS")
    health_timeout_seconds: float = Field(3.0, validation_alias="GATEWAY_HEALTH_TIMEOUT_SECONDS")
    requests_per_minute: int = Field(600, ge=1, validation_alias="GATEWAY_REQUESTS_PER_MINUTE")
    tokens_per_day: int = Field(2_000_000, ge=1, validation_alias="GATEWAY_TOKENS_PER_DAY")
    # Browsers may call the API from these origins only; empty means no cross-origin calls.
    cors_origins: list[str] = Field(default_factory=list, validation_alias="GATEWAY_CORS_ORIGINS")
    generation_timeout_seconds: float = Field(300.0, validation_alias="GATEWAY_GENERATION_TIMEOUT_SECONDS")
    request_timeout_seconds: float = Field(30.0, validation_alias="GATEWAY_REQUEST_TIMEOUT_SECONDS")
    # The most tokens one answer may ask for: a larger `max_tokens` is refused here (400 naming it),
    # before the guard runs. The platform's one figure (genai_platform.contracts.openai), as
    # inference's INFERENCE_MAX_TOKENS and the ui's UI_MAX_TOKENS take it: raise them together.
    max_tokens: int = Field(MAX_COMPLETION_TOKENS, ge=1, validation_alias="GATEWAY_MAX_TOKENS")
    # The managed prompt that grounds answers in retrieved chunks (variables: question, context).
    rag_prompt: str = Field("rag-answer", validation_alias="GATEWAY_RAG_PROMPT")
    retrieval_k: int = Field(4, ge=1, le=50, validation_alias="GATEWAY_RETRIEVAL_K")
    # A stream's output checks: 0 asks the guard again as soon as it answered (text arriving
    # meanwhile goes with the next check); more is the least time between two checks, in ms
    # (time batching). Measured in bench/chat: bench/README.md "Chat pipeline".
    guard_stream_window_ms: float = Field(0.0, ge=0, le=1000, validation_alias="GATEWAY_GUARD_STREAM_WINDOW_MS")
    # Tell callers each chat stage's duration (`Server-Timing`); off hides the platform's timings.
    server_timing: bool = Field(True, validation_alias="GATEWAY_SERVER_TIMING")
    # The merged OpenAPI document (/v1/openapi.json) is rebuilt from the apps' documents this often.
    openapi_ttl_seconds: float = Field(300.0, ge=0, validation_alias="GATEWAY_OPENAPI_TTL_SECONDS")
    openapi_timeout_seconds: float = Field(5.0, gt=0, validation_alias="GATEWAY_OPENAPI_TIMEOUT_SECONDS")
    # The largest request let through, in bytes (gateway.limits.SizeLimits): over it the answer is a
    # 413 (body) or 431 (headers) here, before any sidecar sees the request. Every sidecar's
    # `--max-body-size` (dapr.yaml `maxBodySize`, 16Mi) is above the largest of them.
    # Chat, completions and embeddings: 1 MiB holds the guard's largest text (1,000,000 characters).
    max_model_body_bytes: int = Field(1 << 20, ge=1024, le=16 << 20, validation_alias="GATEWAY_MAX_MODEL_BODY_BYTES")
    # Documents and training files: the largest document (10 MiB) and 64 KiB of multipart framing
    # (genai_platform.contracts.documents, the figures ingestion and the ui default to as well).
    max_upload_body_bytes: int = Field(
        MAX_UPLOAD_BODY_BYTES, ge=1024, le=16 << 20, validation_alias="GATEWAY_MAX_UPLOAD_BODY_BYTES"
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, le=16 << 20, validation_alias="GATEWAY_MAX_BODY_BYTES")
    # Every header field together ("name: value" and CRLF each), as Go's net/http counts MaxHeaderBytes.
    max_header_bytes: int = Field(16 << 10, ge=1024, le=1 << 20, validation_alias="GATEWAY_MAX_HEADER_BYTES")
