"""The `rag-answer` prompt, created at the service's first start, as the registry seeds its base model.

The gateway renders `rag-answer` for every request grounded in a collection; without it each
one paid a failing round trip and fell back to the gateway's built-in grounding prompt. The
seeded first version (1; after an operator deleted the prompt, the number after its last)
holds that same built-in prompt (genai_platform.contracts.prompts GROUNDING_INSTRUCTIONS), so
answers do not change, and carries the `production` label. A deleted `rag-answer` is seeded
again at the next start.

Safe to repeat and to run on several replicas at once: a prompt that exists is left as it is
(an operator's later versions and labels win); the head is written create-only, so of two
replicas starting together one creates it and the other finds it taken; a head left without a
version by a crash gets its version on the next start.
"""

from __future__ import annotations

import logging

from genai_platform.contracts.prompts import GROUNDING_INSTRUCTIONS
from prompts.errors import PromptExists, PromptNotFound
from prompts.store import PromptStore
from prompts.templates import Message, PromptType, VersionDraft

log = logging.getLogger(__name__)

PRODUCTION = "production"


def rag_answer_draft() -> VersionDraft:
    """The built-in grounding prompt as a chat template: the instructions and `context` as the
    system turn, the `question` as the user turn (both strings, both required)."""
    return VersionDraft(
        type=PromptType.CHAT,
        messages=[
            Message(role="system", content=GROUNDING_INSTRUCTIONS + "{{ context }}"),
            Message(role="user", content="{{ question }}"),
        ],
        variables={
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "The user's last question."},
                "context": {"type": "string", "description": "The retrieved chunks, numbered."},
            },
            "required": ["question", "context"],
        },
        commit_message="Seeded at first start: the gateway's built-in grounding prompt",
        labels=[PRODUCTION],
    )


async def seed_rag_prompt(store: PromptStore, name: str) -> bool:
    """Create prompt `name` with the grounding prompt as its first version (`production`); False when it was there.

    Raises the store's `DaprError` while the state store cannot be reached (the caller retries).
    """
    try:
        head = await store.get_prompt(name)
    except PromptNotFound:
        head = None
    if head is not None and head["latest"] >= 1:
        return False
    draft = rag_answer_draft()
    if head is None:
        try:
            await store.create_prompt(name, "Grounded answers (the gateway's RAG prompt)", draft)
        except PromptExists:
            return False  # another replica is seeding it at this moment
    else:
        await store.complete_first_version(name, draft)
    log.info("rag prompt seeded", extra={"prompt": name, "label": PRODUCTION})
    return True
