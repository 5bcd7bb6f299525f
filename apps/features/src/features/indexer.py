"""What the features service does with `documents.ingested` and `documents.deleted` events."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from features.embedding import Embedder
from features.index import ChunkIndex, IndexedChunk, IndexStore
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
    part: int = 0
    parts: int = 1
    chunks: list[IngestedChunk]


class DocumentDeleted(BaseModel):
    document_id: str


class Indexer:
    """Embeds and indexes chunks from events; idempotent on the event id and on chunk hashes.

    The event id makes a plain redelivery cheap (answered from the ledger); chunk hashes make
    the rest safe: a document published again (a retried ingestion, a bulk publish, whose
    events get fresh ids) re-embeds nothing that is already indexed with the same text.
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
                await self._index_part(payload)
            await self._ledger.record(event.id)
        except DaprError:
            log.warning("documents.ingested: sidecar call failed, retrying", extra={"event_id": event.id})
            return Delivery.RETRY
        return Delivery.SUCCESS

    async def _index_part(self, payload: DocumentIngested) -> None:
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
            )
            for c in payload.chunks
        ]
        fresh = [chunk for chunk in chunks if not self._index.has(chunk.id, chunk.hash)]
        vectors = np.zeros((len(chunks), self._index.dimensions), dtype=np.float32)
        if fresh:
            embedded = await self._embedder.embed([chunk.text for chunk in fresh])
            by_id = dict(zip((chunk.id for chunk in fresh), embedded.vectors, strict=True))
        else:
            by_id = {}
        for row, chunk in enumerate(chunks):
            vectors[row] = by_id[chunk.id] if chunk.id in by_id else self._index.vector(chunk.id)
        await self._store.save_part(payload.document_id, payload.part, chunks, vectors)
        self._index.add(chunks, vectors)
        await self._sidecar.publish(
            Topic.CHUNKS_INDEXED,
            {
                "document_id": payload.document_id,
                "collection": payload.collection,
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
        try:
            async with self._lock(payload.document_id):
                await self._store.forget_document(payload.document_id)
                removed = self._index.remove_document(payload.document_id)
        except DaprError:
            return Delivery.RETRY
        log.info("document removed from the index", extra={"document_id": payload.document_id, "chunks": removed})
        return Delivery.SUCCESS
