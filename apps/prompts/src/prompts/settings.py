"""Settings of the prompts service."""

from pydantic import Field

from genai_platform.settings import ServiceSettings


class PromptsSettings(ServiceSettings):
    """The prompts service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("prompts", validation_alias="APP_ID")
    port: int = Field(8106, validation_alias="APP_PORT")
    # Compiled versions kept in memory, and how long one is trusted without a `prompt.updated`.
    render_cache_size: int = Field(256, validation_alias="PROMPTS_RENDER_CACHE_SIZE", ge=0)
    render_cache_ttl_s: float = Field(60.0, validation_alias="PROMPTS_RENDER_CACHE_TTL_S", gt=0)
    # The RAG prompt seeded at first start (the gateway's GATEWAY_RAG_PROMPT names the same one);
    # empty: seed nothing.
    rag_prompt: str = Field("rag-answer", validation_alias="PROMPTS_RAG_PROMPT")
