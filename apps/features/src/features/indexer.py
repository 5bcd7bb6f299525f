"""What the features service does with `documents.ingested` and `documents.deleted` events."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from features.embedding import Embedder
from features.index import ChunkIndex, IndexedChunk, IndexStore
from features.revisions import Tombstone, Verdict, delete_removes, judge_ingested
from genai_platform.dapr import DaprError, Sidecar
from genai_platform.events import CloudEvent, Delivery, Topic
from genai_platform.idempotency import EventLedger

log = logging.getLogger(__name__)


class IngestedChunk(BaseModel):
    id: str
    index: int
    text: str = Field(min_length=1)
    hash: str
    heading: str | None = None


class DocumentIngested(BaseModel):
    document_id: str
    title: str = ""
    collection: str = "default"
    # Events published before revisions existed are the document's first ingestion.
    revision: int = Field(1, ge=1)
    part: int = 0
    parts: int = 1
    chunks: list[IngestedChunk]


class DocumentDeleted(BaseModel):
    document_id: str
    revision: int = Field(1, ge=1)


class Indexer:
    """Embeds and indexes chunks from events; idempotent on the event id and on chunk hashes.

    The event id makes a plain redelivery cheap (answered from the ledger); chunk hashes make
    the rest safe: a document published again (a retried ingestion, a bulk publish, whose
    events get fresh ids) re-embeds nothing that is already indexed with the same text.
    Revisions order what arrives out of order (revisions.py): a deleted revision is never
    indexed again, however late its event comes, and a newer one replaces an older one.
    """

    def __init__(self, sidecar: Sidecar, embedder: Embedder, index: ChunkIndex, store: IndexStore, app_id: str):
        self._sidecar = sidecar
        self._embedder = embedder
        self._index = index
        self._store = store
        self._ledger = EventLedger(sidecar, app_id)
        # Index and manifest changes for one document happen one at a time.
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, document_id: str) -> asyncio.Lock:
        return self._locks.setdefault(document_id, asyncio.Lock())

    async def on_ingested(self, event: CloudEvent) -> Delivery:
        try:
            payload = DocumentIngested.model_validate(event.data)
        except ValidationError:
            # It can never succeed: drop it (logged) rather than retry it forever.
            log.warning("documents.ingested: invalid payload dropped", extra={"event_id": event.id})
            return Delivery.DROP
        try:
            if await self._ledger.handled(event.id):
                return Delivery.SUCCESS
            async with self._lock(payload.document_id):
                await self._ingested(payload)
            await self._ledger.record(event.id)
        except DaprError:
            log.warning("documents.ingested: sidecar call failed, retrying", extra={"event_id": event.id})
            return Delivery.RETRY
        return Delivery.SUCCESS

    async def _ingested(self, payload: DocumentIngested) -> None:
        doc_id = payload.document_id
        tombstone = await self._store.tombstone(doc_id)
        indexed = self._index.revision(doc_id)
        verdict = judge_ingested(payload.revision, indexed, tombstone.revision if tombstone else None)
        if verdict in (Verdict.DELETED, Verdict.STALE):
            if verdict is Verdict.DELETED:
                await self._store.change_tombstone(
                    doc_id, lambda stone: (stone or Tombstone(payload.revision)).refused_one()
                )
            log.info(
                "documents.ingested: late event refused",
                extra={"document_id": doc_id, "revision": payload.revision, "indexed": indexed, "verdict": verdict},
            )
            return
        await self._index_part(payload, replace=verdict is Verdict.REPLACE)

    async def _index_part(self, payload: DocumentIngested, *, replace: bool) -> None:
        chunks = [
            IndexedChunk(
                id=c.id,
                document_id=payload.document_id,
                index=c.index,
                text=c.text,
                hash=c.hash,
                title=payload.title,
                collection=payload.collection,
                heading=c.heading,
                revision=payload.revision,
            )
            for c in payload.chunks
        ]
        # Same chunk id and text: the vector is already known (an older revision's included).
        by_id = {c.id: self._index.vector(c.id).copy() for c in chunks if self._index.has(c.id, c.hash)}
        fresh = [chunk for chunk in chunks if chunk.id not in by_id]
        if fresh:
            embedded = await self._embedder.embed([chunk.text for chunk in fresh])
            by_id.update(zip((chunk.id for chunk in fresh), embedded.vectors, strict=True))
        vectors = (
            np.stack([by_id[chunk.id] for chunk in chunks])
            if chunks
            else np.zeros((0, self._index.dimensions), dtype=np.float32)
        )
        if replace:
            # A newer revision: the older one's parts go (they may number more chunks).
            await self._store.forget_document(payload.document_id)
            self._index.remove_document(payload.document_id)
        await self._store.save_part(payload.document_id, payload.part, chunks, vectors)
        self._index.add(chunks, vectors)
        await self._sidecar.publish(
            Topic.CHUNKS_INDEXED,
            {
                "document_id": payload.document_id,
                "collection": payload.collection,
                "revision": payload.revision,
                "part": payload.part,
                "parts": payload.parts,
                "chunk_ids": [chunk.id for chunk in chunks],
                "embedded": len(fresh),
            },
        )
        log.info(
            "chunks indexed",
            extra={"document_id": payload.document_id, "chunks": len(chunks), "embedded": len(fresh)},
        )

    async def on_deleted(self, event: CloudEvent) -> Delivery:
        try:
            payload = DocumentDeleted.model_validate(event.data)
        except ValidationError:
            log.warning("documents.deleted: invalid payload dropped", extra={"event_id": event.id})
            return Delivery.DROP
        doc_id, revision = payload.document_id, payload.revision
        try:
            async with self._lock(doc_id):
                indexed = self._index.revision(doc_id)
                removes = delete_removes(indexed, revision)
                chunks = len(self._index.chunk_ids(doc_id)) if removes else 0
                # The tombstone first: from here on no late event of this revision is indexed.
                await self._store.change_tombstone(
                    doc_id, lambda stone: (stone or Tombstone(revision)).buried_again(revision, chunks)
                )
                if removes:
                    await self._store.forget_document(doc_id)
                    self._index.remove_document(doc_id)
        except DaprError:
            return Delivery.RETRY
        log.info(
            "document deleted",
            extra={"document_id": doc_id, "revision": revision, "indexed": indexed, "chunks_removed": chunks},
        )
        return Delivery.SUCCESS
