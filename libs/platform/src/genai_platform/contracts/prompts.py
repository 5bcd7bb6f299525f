"""The prompts service's render answer: a prompt version filled in with the caller's variables.

Its `/v1/prompts/{name}/render` route declares `RenderedPrompt` as the response model; the
gateway's `PromptsClient` parses the answer with it. Both check a variable's name by
`variable_name_problem`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

# The grounding instructions of a RAG answer, followed by the retrieved context. The gateway
# grounds with them when the managed prompt is missing; prompts seeds `rag-answer` with them.
GROUNDING_INSTRUCTIONS = (
    "Answer the question using only the context below. If the context does not hold the answer, say so.\n\nContext:\n"
)


# A prompt's name and a label, as the prompts service takes them (they end up inside state keys and
# URLs: a small, unambiguous alphabet); a label starts with a letter, so it never reads as a version
# number. Unanchored, and written to be valid HTML `pattern`s too, so the ui's fields hint the same
# rule: browsers compile a `pattern` with the `v` flag, where an unescaped `-` in a class is an
# error and the whole pattern is ignored (the ui's `[a-z0-9._-]*` was).
PROMPT_NAME_PATTERN = r"[a-z0-9][a-z0-9._\-]{0,99}"
PROMPT_LABEL_PATTERN = r"[a-z][a-z0-9._\-]{0,49}"


# A variable's name as a template reads it: Jinja2's name token, kept to ASCII, and short.
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_VARIABLE_NAME_CHARS = 64


def variable_name_problem(name: str) -> str | None:
    """Why `name` cannot be a prompt variable's name (not an identifier, over 64 characters), or None."""
    if len(name) > MAX_VARIABLE_NAME_CHARS:
        return f"a variable name is at most {MAX_VARIABLE_NAME_CHARS} characters"
    if not _VARIABLE_NAME.fullmatch(name):
        return "a variable name is a letter or _ followed by letters, digits or _"
    return None


def shown_name(name: str) -> str:
    """A variable's name as an error names it: cut after 64 characters (a key may be megabytes)."""
    return name if len(name) <= MAX_VARIABLE_NAME_CHARS else f"{name[:MAX_VARIABLE_NAME_CHARS]}…"


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
