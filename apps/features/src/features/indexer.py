"""What the features service does with `documents.ingested` and `documents.deleted` events."""

from __future__ import annotations

import asyncio
import logging

import numpy as np

from features.embedding import Embedder
from features.index import ChunkIndex, IndexedChunk, IndexStore
from features.revisions import Tombstone, Verdict, delete_removes, judge_ingested
from genai_platform.dapr import Sidecar
from genai_platform.events import ChunksIndexed, DocumentDeleted, DocumentIngested, Topic

log = logging.getLogger(__name__)


class Indexer:
    """Embeds and indexes chunks from events; idempotent on chunk hashes and revisions.

    The event id makes a plain redelivery cheap (answered from the app's `SeenEvents` by the
    subscription, features.routes); chunk hashes make
    the rest safe: a document published again (a retried ingestion, a bulk publish, whose
    events get fresh ids) re-embeds nothing that is already indexed with the same text.
    Revisions order what arrives out of order (revisions.py): a deleted revision is never
    indexed again, however late its event comes, and a newer one replaces an older one.
    """

    def __init__(self, sidecar: Sidecar, embedder: Embedder, index: ChunkIndex, store: IndexStore):
        self._sidecar = sidecar
        self._embedder = embedder
        self._index = index
        self._store = store
        # Index and manifest changes for one document happen one at a time.
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, document_id: str) -> asyncio.Lock:
        return self._locks.setdefault(document_id, asyncio.Lock())

    async def on_ingested(self, payload: DocumentIngested) -> None:
        """Index one part of a document (or refuse it, by revision). Raises `DaprError` when the
        state store or the broker fails: the delivery is retried."""
        async with self._lock(payload.document_id):
            await self._ingested(payload)

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
            # One vector per distinct text: text repeated across a document's chunks (a footer on
            # every page, a table's header row, a long upload of one paragraph) is embedded once.
            texts = list(dict.fromkeys(chunk.text for chunk in fresh))
            embedded = await self._embedder.embed(texts)
            by_text = dict(zip(texts, embedded.vectors, strict=True))
            by_id.update((chunk.id, by_text[chunk.text]) for chunk in fresh)
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
        indexed = ChunksIndexed(
            document_id=payload.document_id,
            collection=payload.collection,
            revision=payload.revision,
            part=payload.part,
            parts=payload.parts,
            chunk_ids=[chunk.id for chunk in chunks],
            embedded=len(fresh),
        )
        await self._sidecar.publish(Topic.CHUNKS_INDEXED, indexed.model_dump(mode="json"))
        log.info(
            "chunks indexed",
            extra={"document_id": payload.document_id, "chunks": len(chunks), "embedded": len(fresh)},
        )

    async def on_deleted(self, payload: DocumentDeleted) -> None:
        """Bury a document's revision and remove its chunks when the index holds that revision or
        an older one. Idempotent by itself (a tombstone only moves up). Raises `DaprError` when
        the state store fails: the delivery is retried."""
        doc_id, revision = payload.document_id, payload.revision
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
        log.info(
            "document deleted",
            extra={"document_id": doc_id, "revision": revision, "indexed": indexed, "chunks_removed": chunks},
        )
