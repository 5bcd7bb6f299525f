"""The prompts service's render answer: a prompt version filled in with the caller's variables.

Its `/v1/prompts/{name}/render` route declares `RenderedPrompt` as the response model; the
gateway's `PromptsClient` parses the answer with it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# The grounding instructions of a RAG answer, followed by the retrieved context. The gateway
# grounds with them when the managed prompt is missing; prompts seeds `rag-answer` with them.
GROUNDING_INSTRUCTIONS = (
    "Answer the question using only the context below. If the context does not hold the answer, say so.\n\nContext:\n"
)


class PromptMessage(BaseModel):
    """One rendered chat message (OpenAI's roles)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class RenderedPrompt(BaseModel):
    """A rendered version: which one (`label` is None when asked by number), its messages, and the
    generation settings that travel with it (`temperature`, `max_tokens`, ...; unknown keys pass
    through). A `text` prompt answers one user message and also `text`; a `chat` prompt has no `text`."""

    name: str
    version: int
    label: str | None
    type: Literal["text", "chat"]
    messages: list[PromptMessage]
    config: dict[str, Any] = Field(default_factory=dict)
    text: str | None = Field(None, description="The rendered template of a `text` prompt only.")
