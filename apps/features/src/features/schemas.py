"""The shapes of the features service's answers (embeddings, the index), for its OpenAPI document.

Search results are a cross-service answer: `genai_platform.contracts.search`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from features.revisions import Tombstone


class Answer(BaseModel):
    """Base of the answer models: no field beyond those declared."""

    # Exactly what is sent: an unknown field in a real answer fails its validation in the tests.
    model_config = ConfigDict(extra="forbid")


class Embedding(Answer):
    """One input's vector: floats, or with `encoding_format: base64` their little-endian float32 bytes."""

    object: Literal["embedding"]
    index: int = Field(description="The input's position in the request.")
    embedding: list[float] | str


class EmbeddingUsage(Answer):
    """Tokens the model read for the inputs (prompt and total are the same: nothing is generated)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(Answer):
    """OpenAI's embeddings answer: one vector per input, in input order, L2-normalised."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class IndexedDocument(Answer):
    """One document as the index holds it: its chunk ids and revision (None when not indexed),
    and its tombstone (None unless it was deleted)."""

    document_id: str
    chunk_ids: list[str]
    revision: int | None
    tombstone: Tombstone | None
