"""The in-memory index (vectors + BM25 + chunk metadata) and its copy in Dapr state.

State keys (prefixed with the app-id by the store):
  part:<document_id>:<part>   the chunks of one `documents.ingested` event, with embeddings
  manifest                      which part keys exist, per document: what a restart reads
  tombstone:<document_id>       the highest revision of a deleted document (see revisions.py);
                                kept for good: a few dozen bytes per deleted document

A part is written before the manifest names it, and the manifest before the in-memory index
changes, so a crash at any point leaves either nothing visible or a part that the redelivered
event writes again (same key, same content). A tombstone is written before a delete touches
the index, so from then on no late event of that revision is indexed.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from features.bm25 import BM25Index
from features.revisions import Tombstone
from genai_platform.dapr import Sidecar, StateConflict

log = logging.getLogger(__name__)

MANIFEST_KEY = "manifest"


@dataclass(frozen=True)
class IndexedChunk:
    """One searchable chunk: its id (`<document id>:<index>`), text and content hash, the document's
    title, collection and revision, and the heading it sits under."""

    id: str
    document_id: str
    index: int
    text: str
    hash: str
    title: str
    collection: str
    heading: str | None = None
    revision: int = 1  # the ingestion of the document this chunk came from


class ChunkIndex:
    """Chunks with their unit-length embeddings (a dense matrix) and a BM25 index beside it.

    Brute-force cosine over a numpy matrix: exact, and fast enough to well past 10^5 chunks of
    384 dimensions; an ANN index would only pay off beyond that.
    """

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self._vectors = np.zeros((1024, dimensions), dtype=np.float32)
        self._chunks: list[IndexedChunk] = []
        self._rows: dict[str, int] = {}
        self._by_document: dict[str, set[str]] = {}
        # Chunk ids per collection, kept with every add and remove: a search filtered to one
        # collection reads its rows from here instead of scanning every chunk in Python (18,000
        # chunks: 14 ms a scan, twice a search; bench/README.md "Chat pipeline").
        self._by_collection: dict[str, set[str]] = {}
        self._revisions: dict[str, int] = {}
        self.keywords = BM25Index()

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def documents(self) -> int:
        """How many documents have chunks in the index."""
        return len(self._by_document)

    def has_collection(self, collection: str) -> bool:
        """Whether any indexed chunk is in `collection`."""
        return bool(self._by_collection.get(collection))

    def collection_ids(self, collection: str) -> frozenset[str] | set[str]:
        """The ids of the chunks in `collection` (empty when none); the caller must not change it."""
        return self._by_collection.get(collection) or frozenset()

    def collection_rows(self, collection: str) -> np.ndarray:
        """The matrix rows (ascending, `np.intp`) of the chunks in `collection`, for `matrix()`'s view."""
        ids = self.collection_ids(collection)
        rows = np.fromiter((self._rows[chunk_id] for chunk_id in ids), dtype=np.intp, count=len(ids))
        rows.sort()
        return rows

    def get(self, chunk_id: str) -> IndexedChunk | None:
        """The chunk with this id; None when it is not indexed."""
        row = self._rows.get(chunk_id)
        return self._chunks[row] if row is not None else None

    def vector(self, chunk_id: str) -> np.ndarray:
        """The chunk's unit-length embedding (a view into the matrix); KeyError when it is not indexed."""
        return self._vectors[self._rows[chunk_id]]

    def revision(self, document_id: str) -> int | None:
        """The revision of the document the index holds; None when it holds none of it."""
        return self._revisions.get(document_id)

    def chunk_ids(self, document_id: str) -> set[str]:
        """The ids of the document's indexed chunks (empty when none)."""
        return set(self._by_document.get(document_id, ()))

    def has(self, chunk_id: str, chunk_hash: str) -> bool:
        """Whether this chunk is indexed with this content (its vector can be reused)."""
        existing = self.get(chunk_id)
        return existing is not None and existing.hash == chunk_hash

    def add(self, chunks: list[IndexedChunk], vectors: np.ndarray) -> None:
        """Add or replace chunks by id: adding the same chunk twice keeps one copy."""
        for chunk, vector in zip(chunks, vectors, strict=True):
            row = self._rows.get(chunk.id)
            if row is None:
                row = len(self._chunks)
                if row == len(self._vectors):
                    grown = np.zeros((len(self._vectors) * 2, self.dimensions), dtype=np.float32)
                    grown[:row] = self._vectors[:row]
                    self._vectors = grown
                self._chunks.append(chunk)
                self._rows[chunk.id] = row
            else:
                self._forget_collection(self._chunks[row])
                self._chunks[row] = chunk
            self._vectors[row] = vector
            self._by_collection.setdefault(chunk.collection, set()).add(chunk.id)
            self._by_document.setdefault(chunk.document_id, set()).add(chunk.id)
            self._revisions[chunk.document_id] = chunk.revision
            self.keywords.add(chunk.id, _keyword_text(chunk))

    def remove_document(self, document_id: str) -> int:
        """Remove every chunk of the document; answers how many were removed."""
        self._revisions.pop(document_id, None)
        ids = self._by_document.pop(document_id, set())
        for chunk_id in ids:
            self._remove(chunk_id)
        return len(ids)

    def _remove(self, chunk_id: str) -> None:
        # Swap the last row into the hole: removal stays O(1) and the matrix dense.
        row = self._rows.pop(chunk_id)
        self._forget_collection(self._chunks[row])
        last = len(self._chunks) - 1
        if row != last:
            moved = self._chunks[last]
            self._chunks[row] = moved
            self._vectors[row] = self._vectors[last]
            self._rows[moved.id] = row
        self._chunks.pop()
        self.keywords.remove(chunk_id)

    def _forget_collection(self, chunk: IndexedChunk) -> None:
        ids = self._by_collection.get(chunk.collection)
        if ids is not None:
            ids.discard(chunk.id)
            if not ids:
                del self._by_collection[chunk.collection]

    def matrix(self) -> tuple[np.ndarray, list[IndexedChunk]]:
        """A view of the live rows and the chunks they belong to, row for row."""
        return self._vectors[: len(self._chunks)], self._chunks


def _keyword_text(chunk: IndexedChunk) -> str:
    # The title and heading are part of what a chunk is about, for keywords as for people.
    return " ".join(part for part in (chunk.title, chunk.heading or "", chunk.text) if part)


def encode_vector(vector: np.ndarray) -> str:
    """A vector as base64 of its float32 bytes (machine byte order), for the state store."""
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()


def decode_vector(text: str) -> np.ndarray:
    """The vector `encode_vector` wrote (read-only float32 array)."""
    return np.frombuffer(base64.b64decode(text), dtype=np.float32)


def part_key(document_id: str, part: int) -> str:
    """The state key of one stored part (one event's chunks) of a document."""
    return f"part:{document_id}:{part}"


def tombstone_key(document_id: str) -> str:
    """The state key of a deleted document's tombstone."""
    return f"tombstone:{document_id}"


class IndexStore:
    """The index's durable copy in the state store, and the rebuild from it."""

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar
        self._manifest_lock = asyncio.Lock()

    async def save_part(self, document_id: str, part: int, chunks: list[IndexedChunk], vectors: np.ndarray) -> None:
        """Store one part's chunks with their vectors, then list it in the manifest. Raises `DaprError`."""
        value = {
            "document_id": document_id,
            "part": part,
            "chunks": [
                {**chunk.__dict__, "embedding": encode_vector(vector)}
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
        }
        await self._sidecar.save_state(part_key(document_id, part), value)
        await self._change_manifest(lambda parts: _add_part(parts, document_id, part))

    async def tombstone(self, document_id: str) -> Tombstone | None:
        """The document's tombstone; None when it was never deleted. Raises `DaprError`."""
        item = await self._sidecar.get_state(tombstone_key(document_id))
        return Tombstone(**item.value) if item is not None else None

    async def change_tombstone(self, document_id: str, change: Callable[[Tombstone | None], Tombstone]) -> None:
        """Read-modify-write of one document's tombstone under its ETag (other replicas)."""

        def apply(value: dict[str, Any] | None) -> dict[str, Any]:
            return asdict(change(Tombstone(**value) if value is not None else None))

        await self._change(tombstone_key(document_id), apply)

    async def forget_document(self, document_id: str) -> None:
        """Drop the document's parts from the manifest, then delete them. Raises `DaprError`."""
        removed: list[int] = []
        await self._change_manifest(lambda parts: removed.extend(parts.pop(document_id, [])))
        for part in removed:
            await self._sidecar.delete_state(part_key(document_id, part))

    async def load(self, index: ChunkIndex, batch: int = 100) -> None:
        """Fill `index` from the state store (start-up)."""
        item = await self._sidecar.get_state(MANIFEST_KEY)
        parts = (item.value if item else {}).get("parts", {})
        keys = [part_key(doc, part) for doc, numbers in parts.items() for part in numbers]
        for start in range(0, len(keys), batch):
            found = await self._sidecar.get_bulk_state(keys[start : start + batch])
            for key in keys[start : start + batch]:
                if key not in found:
                    log.warning("manifest names a missing part", extra={"key": key})
                    continue
                stored = found[key]["chunks"]
                chunks = [IndexedChunk(**{k: v for k, v in c.items() if k != "embedding"}) for c in stored]
                vectors = np.stack([decode_vector(c["embedding"]) for c in stored]) if stored else None
                if vectors is not None:
                    index.add(chunks, vectors)
        log.info("index rebuilt", extra={"chunks": len(index), "documents": index.documents})

    async def _change_manifest(self, change) -> None:
        def apply(value: dict[str, Any] | None) -> dict[str, Any]:
            # A deep copy: the unchanged value is compared with the changed one.
            manifest = copy.deepcopy(value) if value else {"parts": {}}
            change(manifest["parts"])
            return manifest

        async with self._manifest_lock:
            await self._change(MANIFEST_KEY, apply)

    async def _change(self, key: str, apply: Callable[[Any], Any]) -> None:
        """Write `apply(current value)` under the key's ETag; re-read and retry on a lost race.

        A StateConflict after that is a DaprError: the event handler answers RETRY."""
        for attempt in range(20):
            item = await self._sidecar.get_state(key)
            value = apply(item.value if item else None)
            if item is not None and value == item.value:
                return  # nothing changes: no write
            try:
                await self._sidecar.save_state(
                    key, value, etag=item.etag if item else None, concurrency="first-write" if item else None
                )
                return
            except StateConflict:
                await asyncio.sleep(0.05 * (attempt + 1))
        raise StateConflict(409, "ERR_STATE_SAVE", f"{key} kept changing")


def _add_part(parts: dict[str, list[int]], document_id: str, part: int) -> None:
    numbers = parts.setdefault(document_id, [])
    if part not in numbers:
        numbers.append(part)
