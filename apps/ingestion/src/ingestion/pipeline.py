"""From bytes to a stored, published document: extract, clean, hash, chunk, store, publish."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from genai_platform.dapr import Sidecar
from genai_platform.errors import Conflict
from genai_platform.events import DocumentDeleted, DocumentIngested, IngestedChunk, Topic
from ingestion.chunking import Chunker
from ingestion.clean import clean_text
from ingestion.documents import (
    Document,
    DocumentMeta,
    DocumentState,
    DocumentStore,
    document_id,
    in_requests,
    now,
    stored_chunks,
)
from ingestion.extract import (
    DocumentTooLarge,
    Extracted,
    ExtractOptions,
    Format,
    UnreadableDocument,
    check_content,
    detect_format,
    extract,
)

log = logging.getLogger(__name__)


class OutsideAllowedFolder(ValueError):
    """A path submission points outside the folder ingestion may read (INGESTION_ALLOWED_DIR)."""


class DocumentInOtherCollection(Conflict):
    """The same content is stored already, in another collection (409).

    A document's id is its content hash and it belongs to one collection, so the second
    collection is refused rather than answered with the first one's document (which would never
    be searchable in the second). The problem carries `document_id` and its `collection`: delete
    the document there first, or search that collection.
    """

    title = "Document exists in another collection"


@dataclass(frozen=True)
class Ingested:
    """The stored document, and whether this submission created it (False: the content was there)."""

    document: Document
    created: bool


class Ingestor:
    """The one way in for every trigger (upload, JSON, URL, path, topic, inbox).

    Order of effects, each step safe to repeat because every key derives from the content hash:
    1. chunks + document record in one state transaction (record state `stored`);
    2. the catalog entry;
    3. `documents.ingested` events (bulk);
    4. the record marked `published`.
    A crash after 1 leaves a `stored` record; the next submission of the same content sees it
    and redoes 2-4 instead of answering "already there".
    """

    def __init__(
        self, sidecar: Sidecar, store: DocumentStore, chunker: Chunker, *, chunks_per_event: int, app_id: str
    ) -> None:
        self._sidecar = sidecar
        self._store = store
        self._chunker = chunker
        self._chunks_per_event = chunks_per_event
        self._source = app_id

    async def ingest_bytes(
        self,
        data: bytes,
        meta: DocumentMeta,
        *,
        declared_format: str | None = None,
        filename: str | None = None,
        media_type: str | None = None,
        options: ExtractOptions | None = None,
    ) -> Ingested:
        """Ingest a file's bytes: the format from the declared one, the name or the media type, then
        the text extracted and ingested as `ingest_text`. Raises `UnsupportedFormat`,
        `ContentMismatch` when the bytes are of another type than the format (a PNG as `notes.txt`),
        `UnreadableDocument`, and what `ingest_text` raises."""
        fmt = detect_format(declared_format, filename, media_type)
        extracted = await asyncio.to_thread(_checked_extract, data, fmt, options or ExtractOptions())
        title = meta.title or extracted.title or (Path(filename).stem if filename else None)
        return await self.ingest_text(
            extracted.text, meta.model_copy(update={"title": title}), fmt=fmt, source=meta.source or filename
        )

    async def ingest_text(
        self, text: str, meta: DocumentMeta, *, fmt: Format = Format.TEXT, source: str | None = None
    ) -> Ingested:
        """Clean, chunk, store and announce a text (see the class for the order of writes).

        Raises `UnreadableDocument` when no text is left after cleaning, `DocumentInOtherCollection`
        when the same content is stored in another collection (after finishing its announcement if
        a crash cut that short), `DaprError` when the state store or the broker fails (the same
        submission can be repeated safely).
        """
        cleaned = await asyncio.to_thread(clean_text, text)
        if not cleaned:
            raise UnreadableDocument("the document has no extractable text")
        content_hash = hashlib.sha256(cleaned.encode()).hexdigest()
        doc_id = document_id(content_hash)
        existing = await self._store.get(doc_id)
        if existing is not None and existing.state is not DocumentState.PUBLISHED:
            log.info("finishing a document stored but not published", extra={"document_id": doc_id})
            existing = await self._announce(existing, await self._store.chunks(existing))
        if existing is not None and existing.collection != meta.collection:
            raise DocumentInOtherCollection(
                f"The same content is document {existing.id} in collection {existing.collection!r}; "
                "a document belongs to one collection: delete it there first to ingest it here.",
                document_id=existing.id,
                collection=existing.collection,
            )
        if existing is not None:
            return Ingested(existing, created=False)

        revision = await self._store.next_revision(doc_id)
        pieces = await asyncio.to_thread(self._chunker.chunks, cleaned)
        chunks = stored_chunks(doc_id, pieces)
        title = meta.title or _first_line(cleaned)
        document = Document(
            id=doc_id,
            title=title,
            source=meta.source or source,
            tags=meta.tags,
            collection=meta.collection,
            format=str(fmt),
            content_hash=content_hash,
            characters=len(cleaned),
            chunk_count=len(chunks),
            tokens=sum(chunk.tokens for chunk in chunks),
            created_at=now(),
            revision=revision,
        )
        await self._store.save(document, chunks)
        log.info("document stored", extra={"document_id": doc_id, "chunks": len(chunks)})
        return Ingested(await self._announce(document, chunks), created=True)

    async def _announce(self, document: Document, chunks) -> Document:
        await self._store.catalog_add(document)
        parts = [chunks[i : i + self._chunks_per_event] for i in range(0, len(chunks), self._chunks_per_event)]
        events = [
            (
                f"{document.id}-{number}",
                DocumentIngested(
                    document_id=document.id,
                    title=document.title,
                    collection=document.collection,
                    source=document.source,
                    tags=document.tags,
                    content_hash=document.content_hash,
                    revision=document.revision,
                    part=number,
                    parts=len(parts),
                    chunks=[IngestedChunk.model_validate(chunk.model_dump()) for chunk in part],
                ).model_dump(mode="json"),
            )
            for number, part in enumerate(parts)
        ]
        if len(events) == 1:
            await self._sidecar.publish(Topic.DOCUMENTS_INGESTED, events[0][1])
        else:
            # A large document's events are more than one request to the sidecar may carry.
            # Sized as Sidecar.publish_many sends each entry.
            entry = lambda event: {"entryId": event[0], "event": event[1], "contentType": "application/json"}  # noqa: E731
            for part in in_requests(events, entry):
                await self._sidecar.publish_many(Topic.DOCUMENTS_INGESTED, part)
        return await self._store.mark_published(document)

    async def delete(self, document: Document) -> None:
        """Announce first, then forget: if the delete fails half-way, asking again finishes it.

        The event names the revision deleted: indexes refuse that revision's `documents.ingested`
        events from then on, however late they arrive, and take the next ingestion of the same
        content (a higher revision)."""
        deleted = DocumentDeleted(
            document_id=document.id,
            collection=document.collection,
            chunk_count=document.chunk_count,
            revision=document.revision,
        )
        await self._sidecar.publish(Topic.DOCUMENTS_DELETED, deleted.model_dump(mode="json"))
        await self._store.delete(document)
        await self._store.catalog_remove(document.id)

    async def ingest_path(self, path: str, allowed_dir: Path, meta: DocumentMeta, max_bytes: int, **kwargs) -> Ingested:
        """A file inside `allowed_dir` (after resolving symlinks and `..`); anything else is refused."""
        root, candidate = await asyncio.to_thread(_inside, allowed_dir, path)
        if candidate.stat().st_size > max_bytes:  # noqa: ASYNC240 - one stat of a local file
            raise DocumentTooLarge(f"the file is larger than {max_bytes} bytes")
        data = await asyncio.to_thread(candidate.read_bytes)
        meta = meta.model_copy(update={"source": meta.source or f"file:{candidate.relative_to(root)}"})
        return await self.ingest_bytes(data, meta, filename=candidate.name, **kwargs)


def _inside(allowed_dir: Path, path: str) -> tuple[Path, Path]:
    root = allowed_dir.resolve()
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        raise OutsideAllowedFolder("the path is not a file inside the allowed folder")
    return root, candidate


def _checked_extract(data: bytes, fmt: Format, options: ExtractOptions) -> Extracted:
    """The text of `data`, once its bytes are known to be of `fmt` (`ContentMismatch` otherwise)."""
    check_content(data, fmt)
    return extract(data, fmt, options)


def _first_line(text: str) -> str:
    line = text.split("\n", 1)[0].lstrip("#").strip()
    return line[:120] or "untitled"
