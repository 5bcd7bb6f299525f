"""Documents and their chunks in Dapr state, and the catalog that lists them.

Keys (the state store prefixes them with the app-id):
  document:<id>          the document record, written last: it exists only once every chunk does
  chunk:<id>:<index>    one chunk each
  deleted:<id>           the last revision of this id that was deleted (kept after the delete)
  catalog                 summaries of every document, for listing and filtering

A document's id comes from its content hash, so storing the same text twice writes the same
keys: a retried or concurrent ingestion can never leave a second copy, and a crash half-way
is repaired by the next attempt (see `Ingestor` for the order of writes).

The same content ingested again after a delete gets the same id, so each ingestion of an id
has a revision: 1 the first time, one more than the last deleted revision after that. Both
events carry it, and an index refuses a `documents.ingested` of a revision already deleted: an
event that arrives late (a subscriber that was down) cannot bring a deleted document back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from genai_platform.dapr import Sidecar, StateConflict, StateOperation

# What the caller says about a document: one model with `documents.submit`, whose payload extends it.
from genai_platform.events import DocumentMeta as DocumentMeta
from ingestion.chunking import Chunk

log = logging.getLogger(__name__)
T = TypeVar("T")

CATALOG_KEY = "catalog"

# The most JSON one request to the sidecar carries when a document's chunks or events are many:
# daprd's default body limit (--max-body-size 4Mi), a quarter of the 16Mi dapr.yaml gives every
# sidecar. A 10 MiB upload's chunks are about 1.6x its text as JSON (overlap, ids, hashes), over
# 16Mi in one transaction: daprd refused it ("stream too large"). The stores bind later: a Redis
# value may be 512 MB, a PostgreSQL jsonb 255 MB, and neither declares a cap on operations per
# transaction to Dapr (components-contrib 1.18: no MultiMaxSize).
REQUEST_BYTES = 4 << 20


class DocumentState(StrEnum):
    """How far a document's ingestion got (see `Ingestor` for the order of writes)."""

    # Stored, but `documents.ingested` may not have gone out yet: finished on the next submission.
    STORED = "stored"
    PUBLISHED = "published"


class Document(BaseModel):
    """A stored document: id (`doc-` + 32 hex of the content hash), metadata, format, sizes
    (characters, chunks, tokens), creation time (ISO 8601), revision and ingestion state."""

    id: str
    title: str
    source: str | None = None
    tags: list[str] = Field(default_factory=list)
    collection: str
    format: str
    content_hash: str
    characters: int
    chunk_count: int
    tokens: int
    created_at: str
    # Which ingestion of this id (content) this is; see the module's docstring.
    revision: int = 1
    state: DocumentState = DocumentState.STORED

    def summary(self) -> dict[str, Any]:
        """The document as the API and the catalog show it: every field but `state`, as JSON values."""
        return self.model_dump(mode="json", exclude={"state"})


class StoredChunk(BaseModel):
    """One chunk as stored: id (`<document id>:<index>`), text, sha256 (hex), tokens and heading path."""

    id: str
    document_id: str
    index: int
    text: str
    hash: str
    tokens: int
    heading: str | None = None


def document_id(content_hash: str) -> str:
    """A document's id from the sha256 (hex) of its cleaned text: the same content, the same id."""
    return f"doc-{content_hash[:32]}"


def chunk_key(doc_id: str, index: int) -> str:
    """The state key of one chunk."""
    return f"chunk:{doc_id}:{index}"


def document_key(doc_id: str) -> str:
    """The state key of a document's record."""
    return f"document:{doc_id}"


def deleted_key(doc_id: str) -> str:
    """The state key of the last revision of `doc_id` that was deleted."""
    return f"deleted:{doc_id}"


def in_requests(items: Sequence[T], as_json: Callable[[T], Any], limit: int | None = None) -> Iterator[list[T]]:
    """`items` in order, in runs whose JSON (`as_json` of each, as it goes in the request's list)
    is at most `limit` bytes (`REQUEST_BYTES` by default; UTF-8, compact, as httpx sends it); an
    item larger than `limit` goes alone."""
    limit = REQUEST_BYTES if limit is None else limit
    part: list[T] = []
    size = 0
    for item in items:
        item_size = len(json.dumps(as_json(item), ensure_ascii=False, separators=(",", ":")).encode()) + 1
        if part and size + item_size > limit:
            yield part
            part, size = [], 0
        part.append(item)
        size += item_size
    if part:
        yield part


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def stored_chunks(doc_id: str, chunks: Sequence[Chunk]) -> list[StoredChunk]:
    """The chunker's chunks as the store keeps them, ids derived from the document's."""
    return [
        StoredChunk(
            id=f"{doc_id}:{chunk.index}",
            document_id=doc_id,
            index=chunk.index,
            text=chunk.text,
            hash=chunk.hash,
            tokens=chunk.tokens,
            heading=chunk.heading,
        )
        for chunk in chunks
    ]


class DocumentStore:
    """Documents, chunks and the catalog over the sidecar's state API."""

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar
        # One writer of the catalog per process; the ETag guards against other replicas.
        self._catalog_lock = asyncio.Lock()

    async def get(self, doc_id: str) -> Document | None:
        """The document's record; None when there is none. Raises `DaprError`."""
        item = await self._sidecar.get_state(document_key(doc_id))
        return Document.model_validate(item.value) if item is not None else None

    async def chunks(self, document: Document) -> list[StoredChunk]:
        """The document's chunks in order (one bulk read). Raises `DaprError`."""
        keys = [chunk_key(document.id, index) for index in range(document.chunk_count)]
        found = await self._sidecar.get_bulk_state(keys)
        return [StoredChunk.model_validate(found[key]) for key in keys if key in found]

    async def save(self, document: Document, chunks: Sequence[StoredChunk]) -> None:
        """Chunks, then the record, in transactions of at most `REQUEST_BYTES` each, the record last.

        A small document is one transaction; a large one is several (its chunks as JSON are more
        than a sidecar takes in one request), so a record is never visible before its chunks, and
        a crash half-way leaves chunks with no record, which the next submission writes again
        under the same keys. On Redis each transaction is MULTI/EXEC: all its keys or none.
        """
        steps = [
            [StateOperation("upsert", chunk_key(document.id, chunk.index), chunk.model_dump(mode="json"))]
            for chunk in chunks
        ]
        steps.append([StateOperation("upsert", document_key(document.id), document.model_dump(mode="json"))])
        await self._transact_in_parts(steps)

    async def next_revision(self, doc_id: str) -> int:
        """The revision a new ingestion of `doc_id` gets: one past the last one deleted."""
        item = await self._sidecar.get_state(deleted_key(doc_id))
        return (int(item.value["revision"]) if item is not None else 0) + 1

    async def mark_published(self, document: Document) -> Document:
        """Record that the document's `documents.ingested` events went out; answers the updated record."""
        published = document.model_copy(update={"state": DocumentState.PUBLISHED})
        await self._sidecar.save_state(document_key(document.id), published.model_dump(mode="json"))
        return published

    async def delete(self, document: Document) -> None:
        """Chunks out, then the record out and the deleted revision in (together, last), in
        transactions of at most `REQUEST_BYTES` each: a delete cut short leaves the record, so
        asking again finishes it."""
        steps = [[StateOperation("delete", chunk_key(document.id, index))] for index in range(document.chunk_count)]
        steps.append(
            [
                StateOperation("delete", document_key(document.id)),
                StateOperation("upsert", deleted_key(document.id), {"revision": document.revision}),
            ]
        )
        await self._transact_in_parts(steps)

    async def _transact_in_parts(self, steps: list[list[StateOperation]]) -> None:
        # Each step's operations stay in one transaction; the transactions go in order.
        for part in in_requests(steps, lambda step: [operation.to_json() for operation in step]):
            await self._sidecar.transact([operation for step in part for operation in step])

    # --- catalog ------------------------------------------------------------------------------

    async def list(self, *, collection: str | None, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of catalog entries (oldest first, optionally one collection's) and how many match."""
        item = await self._sidecar.get_state(CATALOG_KEY)
        entries = list((item.value if item else {}).get("documents", {}).values())
        if collection is not None:
            entries = [entry for entry in entries if entry.get("collection") == collection]
        entries.sort(key=lambda entry: (entry.get("created_at", ""), entry["id"]))
        return entries[offset : offset + limit], len(entries)

    async def catalog_add(self, document: Document) -> None:
        """Add or replace the document's catalog entry; raises `StateConflict` after 20 lost races."""
        await self._update_catalog(lambda docs: docs.__setitem__(document.id, document.summary()))

    async def catalog_remove(self, doc_id: str) -> None:
        """Remove the document's catalog entry (absent is fine); raises `StateConflict` after 20 lost races."""
        await self._update_catalog(lambda docs: docs.pop(doc_id, None))

    async def _update_catalog(self, change) -> None:
        async with self._catalog_lock:
            for attempt in range(20):
                item = await self._sidecar.get_state(CATALOG_KEY)
                catalog = dict(item.value) if item else {"documents": {}}
                change(catalog["documents"])
                try:
                    # first-write: with an ETag the write fails if another replica wrote since.
                    await self._sidecar.save_state(
                        CATALOG_KEY,
                        catalog,
                        etag=item.etag if item else None,
                        concurrency="first-write" if item else None,
                    )
                    return
                except StateConflict:
                    log.info("catalog changed under us; retrying", extra={"attempt": attempt})
                    await asyncio.sleep(0.05 * (attempt + 1))
            raise StateConflict(409, "ERR_STATE_SAVE", "the catalog kept changing")
