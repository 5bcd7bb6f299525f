"""One document, one collection: the Ingestor against the one fake sidecar (tests/fakes.py)."""

from __future__ import annotations

import asyncio
import re

import pytest

from fakes import FakeDapr
from ingestion import documents
from ingestion.chunking import Chunker, ChunkingPolicy
from ingestion.documents import DocumentMeta, DocumentState, DocumentStore, document_key
from ingestion.extract import ContentMismatch
from ingestion.pipeline import DocumentInOtherCollection, Ingestor

TEXT = "Tides follow the Moon. Spring tides come with the full and the new Moon."


def ingestor(dapr: FakeDapr) -> Ingestor:
    sidecar = dapr.sidecar("ingestion")
    # Words as tokens: the pipeline's logic, not the tokenizer, is under test here.
    policy = ChunkingPolicy(size=64, overlap=8)
    chunker = Chunker(lambda text: [match.span() for match in re.finditer(r"\S+", text)], policy)
    return Ingestor(sidecar, DocumentStore(sidecar), chunker, chunks_per_event=8, app_id="ingestion")


def test_the_same_content_for_another_collection_is_refused_naming_the_stored_document() -> None:
    dapr = FakeDapr()
    pipeline = ingestor(dapr)
    first = asyncio.run(pipeline.ingest_text(TEXT, DocumentMeta(collection="a")))
    again = asyncio.run(pipeline.ingest_text(TEXT, DocumentMeta(collection="a")))
    assert (first.created, again.created, again.document.id) == (True, False, first.document.id)
    published = len(dapr.published)

    with pytest.raises(DocumentInOtherCollection) as refused:
        asyncio.run(pipeline.ingest_text(TEXT, DocumentMeta(collection="b")))
    assert refused.value.status == 409
    assert refused.value.extensions == {"document_id": first.document.id, "collection": "a"}
    assert len(dapr.published) == published  # nothing announced for collection b


def test_a_half_finished_document_is_announced_before_another_collection_is_refused() -> None:
    dapr = FakeDapr()
    pipeline = ingestor(dapr)
    doc = asyncio.run(pipeline.ingest_text(TEXT, DocumentMeta(collection="a"))).document
    # As after a crash between the store and the events: the record is `stored`, nothing published.
    dapr.store.records[document_key(doc.id)].value["state"] = DocumentState.STORED
    dapr.published.clear()
    with pytest.raises(DocumentInOtherCollection):
        asyncio.run(pipeline.ingest_text(TEXT, DocumentMeta(collection="b")))
    assert [p.data["collection"] for p in dapr.published] == ["a"]


def test_bytes_of_another_type_are_refused_before_anything_is_stored() -> None:
    dapr = FakeDapr()
    png = bytes.fromhex("89504e470d0a1a0a0000000d494844520000000200000002080000000057dd52f8")
    with pytest.raises(ContentMismatch):
        asyncio.run(ingestor(dapr).ingest_bytes(png, DocumentMeta(), filename="notes.txt", media_type="text/plain"))
    assert dapr.published == [] and dapr.store.records == {}


def test_a_document_larger_than_one_request_is_stored_and_announced_in_several(monkeypatch) -> None:
    """A 9 MB upload's chunks were one transaction over daprd's body limit ("stream too large"):
    chunks and events now go in requests of at most REQUEST_BYTES, the record last."""
    monkeypatch.setattr(documents, "REQUEST_BYTES", 16384)
    dapr = FakeDapr()
    sent: list[tuple[str, bytes]] = []
    handle = dapr.handle

    async def recording(request):
        sent.append((request.url.path, request.content))
        return await handle(request)

    dapr.handle = recording
    text = "\n\n".join(f"Paragraph {n} says the tide turns {n} times, more or less." * 4 for n in range(200))
    document = asyncio.run(ingestor(dapr).ingest_text(text, DocumentMeta(collection="big"))).document

    transactions = [body for path, body in sent if path.endswith("/transaction")]
    bulks = [body for path, body in sent if "/publish/bulk/" in path]
    assert len(transactions) > 3 and len(bulks) > 1
    # Each body is its items' JSON plus the list's wrapper: {"operations":[...]} or [...].
    assert all(len(body) <= 16384 + len('{"operations":[]}') for body in transactions + bulks)
    record = document_key(document.id).encode()
    assert [record in body for body in transactions] == [False] * (len(transactions) - 1) + [True]
    stored = asyncio.run(DocumentStore(dapr.sidecar("ingestion")).chunks(document))
    assert [chunk.index for chunk in stored] == list(range(document.chunk_count))
    events = dapr.topics("documents.ingested")
    assert sorted(event["part"] for event in events) == list(range(len(events)))
    assert sum(len(event["chunks"]) for event in events) == document.chunk_count
