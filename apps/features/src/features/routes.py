"""HTTP routes of the features service: search, embeddings, index stats, and its subscriptions."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from features.limits import refuse_long_inputs, refuse_unknown_token_ids
from features.schemas import EmbeddingList, IndexedDocument
from features.search import Mode, SearchParams, search
from genai_platform.contracts.openai import EmbeddingsRequest, UnsupportedField
from genai_platform.contracts.search import SearchResults
from genai_platform.dapr import DaprError
from genai_platform.errors import Problem, problem_responses
from genai_platform.events import CloudEvent, DocumentDeleted, DocumentIngested, Topic
from genai_platform.paths import ResourceId
from genai_platform.subscriptions import Subscriptions

api = APIRouter(prefix="/v1", tags=["features"])
subscriptions = Subscriptions()


class SearchRequest(BaseModel):
    # An unknown field is a 422 naming it: a misspelt `top_k` must not pass for the default `k`.
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=100)
    mode: Mode = Mode.HYBRID
    collection: str | None = None
    collection_must_exist: bool = Field(
        False,
        description="Answer 404 naming `collection` when no indexed document is in it, instead of no results "
        "(the chat pipeline's grounding asks this: an answer grounded in nothing must not pass for a grounded one).",
    )
    vector_weight: float = Field(0.5, ge=0, le=1, description="The vector score's share of the hybrid score.")
    keyword_weight: float = Field(0.5, ge=0, le=1, description="The keyword (BM25) score's share of the hybrid score.")
    mmr: bool = False
    mmr_lambda: float = Field(0.7, ge=0, le=1)

    @field_validator("keyword_weight")
    @classmethod
    def _a_hybrid_score_needs_a_weight(cls, value: float, info: ValidationInfo) -> float:
        # Both at 0 scored every chunk 0 and answered them in no order (a new-user trial).
        if value == 0 and info.data.get("vector_weight") == 0 and info.data.get("mode") is Mode.HYBRID:
            raise ValueError("vector_weight and keyword_weight are both 0: a hybrid score needs one above 0")
        return value


@api.post(
    "/search",
    summary="Chunks that answer a query: vector, keyword (BM25) or hybrid, optional MMR",
    responses=problem_responses(404),
)
async def search_chunks(request: Request, body: SearchRequest) -> SearchResults:
    state = request.app.state
    if body.collection_must_exist and body.collection is not None and not state.index.has_collection(body.collection):
        raise Problem(
            404,
            f"No indexed document is in the collection {body.collection!r}.",
            title="Collection not found",
            type_="urn:genai-platform:features:collection-not-found",
            collection=body.collection,
        )
    query_vector = None
    if body.mode is not Mode.KEYWORD:
        query_vector = (await state.embedder.embed([body.query])).vectors[0]
    params = SearchParams(**body.model_dump(exclude={"query", "collection_must_exist"}))
    hits = search(state.index, query_vector, body.query, params)
    return {
        "query": body.query,
        "mode": body.mode,
        "results": [
            {
                "chunk_id": hit.chunk.id,
                "document_id": hit.chunk.document_id,
                "title": hit.chunk.title,
                "collection": hit.chunk.collection,
                "heading": hit.chunk.heading,
                "index": hit.chunk.index,
                "text": hit.chunk.text,
                "score": hit.score,
                "vector_score": hit.vector_score,
                "keyword_score": hit.keyword_score,
            }
            for hit in hits
        ],
    }


# Documented, not re-validated on the way out: an answer can hold thousands of floats.
@api.post(
    "/embeddings",
    summary="OpenAI-compatible embeddings",
    response_model=None,
    responses={200: {"model": EmbeddingList}, **problem_responses(400, 404)},
)
async def embeddings(request: Request, body: EmbeddingsRequest) -> dict[str, Any]:
    """OpenAI's embeddings, of texts or of token-id arrays (the model's own ids, read as given).

    Answers one L2-normalised vector per input, in input order, and `usage.prompt_tokens`: the
    tokens the model read (a token array's own length). A malformed `input` (empty, a mix of
    strings and ids, a lone surrogate) is the contract's 422 naming the element. Raises
    `UnsupportedField` (400) for an unknown field or `dimensions` other than the model's, 404 for
    another model, and `InputOverLimit` (400 naming the element and the limit) past `max_inputs`
    inputs, for an input past the model's token limit, which the model would cut (OpenAI refuses
    those too, never truncates), or for a token id outside the model's vocabulary."""
    body.refuse_unsupported()
    embedder = request.app.state.embedder
    settings = request.app.state.settings
    if body.model not in (None, embedder.name, f"sentence-transformers/{embedder.name}"):
        raise Problem(404, f"model {body.model!r} is not served here; use {embedder.name!r}", code="model_not_found")
    if body.dimensions not in (None, embedder.dimensions):
        # all-MiniLM-L6-v2 was not trained to be cut short (Matryoshka): a truncated vector would
        # pretend to be an embedding.
        raise UnsupportedField("dimensions", f"{embedder.name} makes {embedder.dimensions}-dimensional vectors only.")
    body.check_input_count(settings.max_inputs)
    if body.token_input:
        arrays: list[list[int]] = body.inputs  # type: ignore[assignment]
        refuse_unknown_token_ids(body, embedder.vocab_size, embedder.name)
        refuse_long_inputs(body, [len(ids) for ids in arrays], embedder.max_tokens, embedder.name)
        result = await embedder.embed_token_ids(arrays)
    else:
        texts: list[str] = body.inputs  # type: ignore[assignment]
        refuse_long_inputs(body, await embedder.token_counts(texts), embedder.max_tokens, embedder.name)
        result = await embedder.embed(texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
            for i, vector in enumerate(result.vectors)
        ],
        "model": embedder.name,
        "usage": {"prompt_tokens": result.tokens, "total_tokens": result.tokens},
    }


def _encoded(vector: np.ndarray, encoding: str) -> Annotated[Any, "list of floats or base64"]:
    if encoding == "base64":
        return base64.b64encode(vector.astype(np.float32).tobytes()).decode()
    return vector.tolist()


@api.get("/index", summary="What the index holds")
async def index_stats(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        "chunks": len(state.index),
        "documents": state.index.documents,
        "model": state.embedder.name,
        "dimensions": state.embedder.dimensions,
        "device": state.embedder.device,
        "dtype": state.embedder.dtype,
    }


@api.get(
    "/index/documents/{document_id}",
    summary="One document in the index: its chunk ids and revision, and its tombstone if it was deleted",
    response_model=None,
    responses={200: {"model": IndexedDocument}, **problem_responses(422, 503)},
)
async def indexed_document(request: Request, document_id: ResourceId) -> dict[str, Any]:
    state = request.app.state
    try:
        tombstone = await state.index_store.tombstone(document_id)
    except DaprError as error:
        raise Problem(
            503, "The index's state store is unavailable; try again.", headers={"Retry-After": "2"}
        ) from error
    return {
        "document_id": document_id,
        "chunk_ids": sorted(state.index.chunk_ids(document_id)),
        "revision": state.index.revision(document_id),
        "tombstone": asdict(tombstone) if tombstone else None,
    }


# No deadLetterTopic here, deliberately: while this app is down (a crash, a restart) the sidecar's
# delivery attempts fail, and with a dead-letter topic those events would be parked there and
# never indexed. Without one they stay pending in the broker and come back (Redis: after
# processingTimeout; dapr-config/resiliency/resiliency-features.yaml retries until then). Events that can
# never succeed (an invalid payload) are answered DROP; a failing state store or broker RETRY.


@subscriptions.subscribe(Topic.DOCUMENTS_INGESTED, route="/events/documents-ingested", payload=DocumentIngested)
async def on_ingested(request: Request, event: CloudEvent, payload: DocumentIngested) -> None:
    """Index one part of a document; the app's `SeenEvents` (in Dapr state) answers redeliveries."""
    await request.app.state.indexer.on_ingested(payload)


# Deletes need no seen ids: a tombstone only moves up, so a redelivery changes nothing.
@subscriptions.subscribe(Topic.DOCUMENTS_DELETED, route="/events/documents-deleted", payload=DocumentDeleted, seen=None)
async def on_deleted(request: Request, event: CloudEvent, payload: DocumentDeleted) -> None:
    """Remove a deleted revision's chunks and keep its tombstone."""
    await request.app.state.indexer.on_deleted(payload)
