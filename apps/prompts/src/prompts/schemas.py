"""The shapes of the prompts API's answers (heads and versions), declared for its OpenAPI document.

The store keeps both as plain JSON in Dapr state (see prompts.store); these models say what goes
out. A version carries `VersionDraft`'s fields (bar `labels`, which the head keeps), so the two
cannot drift. Rendered prompts, which the gateway reads, are a cross-service answer:
`genai_platform.contracts.prompts.RenderedPrompt`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, create_model

from prompts.templates import VersionDraft


class PromptHead(BaseModel):
    """A prompt: its description, its newest version number (`latest`), the number the next version
    gets (`next`), and its labels (label -> version number, `latest` included); ISO 8601 times."""

    name: str
    description: str
    created_at: str
    updated_at: str
    latest: int
    next: int
    labels: dict[str, int]
    first: int = Field(
        1,
        description="Its first version's number: 1, or, for a prompt created again under a deleted "
        "prompt's name, the number after that prompt's last (version numbers are never given twice).",
    )


PromptVersion = create_model(
    "PromptVersion",
    __doc__="One immutable version of a prompt, with the labels that point at it now "
    "(a `text` prompt has a `template`, a `chat` prompt `messages`; unset ones are left out).",
    name=(str, ...),
    version=(int, ...),
    **{name: (field.annotation, field) for name, field in VersionDraft.model_fields.items() if name != "labels"},
    created_at=(str, ...),
    labels=(list[str], Field(description="The labels pointing at this version, `latest` among them when newest.")),
)


class CreatedPrompt(BaseModel):
    """A new prompt's head and its first version (1, or `first` for a name a deleted prompt had)."""

    prompt: PromptHead
    version: PromptVersion
