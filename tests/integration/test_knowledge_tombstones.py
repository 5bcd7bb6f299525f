"""A deleted document never comes back from a late `documents.ingested` event, and the same
content ingested again afterwards is found: ingestion and features beside real sidecars, Redis.

Ingestion numbers each ingestion of a document id with a revision; features keeps a tombstone
(the highest revision deleted) in Dapr state and refuses events of a deleted revision.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from knowledge_stack import Knowledge, start_knowledge

from harness import wait_until


@pytest.fixture(scope="module")
def knowledge(default_broker, log_dir, secrets) -> Iterator[Knowledge]:
    stack = start_knowledge(log_dir, secrets)
    yield stack
    stack.stop()


def word() -> str:
    # A made-up word no other document holds: what keyword search finds this document by.
    return "zt" + uuid.uuid4().hex[:10]


def ingest(knowledge: Knowledge, text: str, collection: str) -> dict[str, Any]:
    response = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": text, "collection": collection})
    assert response.status_code == 201, response.text
    return response.json()["document"]


def in_index(knowledge: Knowledge, doc_id: str) -> dict[str, Any]:
    response = knowledge.invoke("features", "GET", f"v1/index/documents/{doc_id}")
    response.raise_for_status()
    return response.json()


def found(knowledge: Knowledge, marker: str, doc_id: str, collection: str) -> bool:
    hits = knowledge.search(marker, mode="keyword", k=20, collection=collection)
    return any(hit["document_id"] == doc_id for hit in hits)


def wait_for_the_late_event(knowledge: Knowledge, marker: str, doc_id: str, collection: str) -> dict[str, Any]:
    """Until the late event was handled either way: refused (the tombstone counts it) or indexed."""

    def handled() -> dict[str, Any] | None:
        stone = in_index(knowledge, doc_id)["tombstone"]
        if stone and stone["late_events_refused"] or found(knowledge, marker, doc_id, collection):
            return in_index(knowledge, doc_id)
        return None

    return wait_until(handled, what="the late event handled", timeout=120, interval=0.5, watch=knowledge.processes)


def test_a_late_event_of_a_deleted_document_is_refused_and_the_content_can_come_back(knowledge: Knowledge) -> None:
    collection = f"late-{uuid.uuid4().hex[:8]}"
    marker = word()
    text = f"Lighthouse keepers log the weather every three hours. {marker}"
    document = ingest(knowledge, text, collection)
    doc_id = document["id"]
    knowledge.wait_searchable(marker, doc_id, collection=collection)
    # What ingestion published for it, rebuilt from what it stored: the event a slow broker or a
    # subscriber that was down would hand features after the delete.
    stored = knowledge.invoke("ingestion", "GET", f"v1/documents/{doc_id}?chunks=true").json()
    late_event = {
        "document_id": doc_id,
        "title": stored["title"],
        "collection": collection,
        "content_hash": stored["content_hash"],
        "revision": stored["revision"],
        "part": 0,
        "parts": 1,
        "chunks": stored["chunks"],
    }

    assert knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}").status_code == 204
    knowledge.wait_gone(marker, doc_id, collection=collection)
    with knowledge.ingestion.sidecar.client() as dapr:
        assert dapr.post("/v1.0/publish/pubsub/documents.ingested", json=late_event).status_code == 204

    after = wait_for_the_late_event(knowledge, marker, doc_id, collection)
    assert not found(knowledge, marker, doc_id, collection), "the deleted document came back"
    assert after["chunk_ids"] == [] and after["revision"] is None
    assert after["tombstone"] == {"revision": stored["revision"], "chunks_removed": 1, "late_events_refused": 1}

    again = ingest(knowledge, text, collection)
    assert again["id"] == doc_id and again["revision"] == stored["revision"] + 1
    knowledge.wait_searchable(marker, doc_id, collection=collection)
    assert in_index(knowledge, doc_id)["revision"] == again["revision"]
    knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}")


def test_a_document_deleted_while_features_is_down_stays_deleted(knowledge: Knowledge) -> None:
    collection = f"down-{uuid.uuid4().hex[:8]}"
    marker = word()
    text = f"Salt marshes store carbon in waterlogged soil. {marker}"
    features = knowledge.features
    assert features.app.process is not None
    features.app.process.stop()  # its sidecar stays, holding the events it cannot deliver
    try:
        document = ingest(knowledge, text, collection)
        doc_id = document["id"]
        assert knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}").status_code == 204
    finally:
        features.app.start()
    features.wait_ready(180)

    # Both events arrive now, in whichever order the sidecar's retries bring them: the delete
    # either removes the chunks or leaves a tombstone that refuses them. A tombstone that did
    # neither, beside indexed chunks, is the document come back (a delete writes its tombstone,
    # counting what it removes, before it removes it).
    def both_handled() -> dict[str, Any] | None:
        now = in_index(knowledge, doc_id)
        stone = now["tombstone"]
        if stone is None:
            return None
        acted = stone["chunks_removed"] or stone["late_events_refused"]
        settled = acted and not now["chunk_ids"]
        came_back = not acted and now["chunk_ids"]
        return now if settled or came_back else None

    after = wait_until(both_handled, what="both events handled", timeout=180, interval=0.5, watch=knowledge.processes)
    assert not found(knowledge, marker, doc_id, collection), "the deleted document came back"
    assert after["chunk_ids"] == []

    again = ingest(knowledge, text, collection)
    assert again["id"] == doc_id and again["revision"] == document["revision"] + 1
    knowledge.wait_searchable(marker, doc_id, collection=collection)
    knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}")
