"""Revisions and tombstones: a deleted document never comes back from a late event, whatever
order the events arrive in, and the same content ingested again after a delete is indexed.

The verdicts are pure functions; the indexer runs against the fake sidecar (tests/fakes.py: state
with ETags, a publish recorder) and an embedder that counts what it embeds (no model).
"""

import asyncio
import hashlib
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from fakes import FakeDapr
from features.embedding import Embeddings
from features.index import ChunkIndex, IndexedChunk, IndexStore
from features.indexer import Indexer
from features.revisions import Tombstone, Verdict, delete_removes, judge_ingested
from features.routes import subscriptions
from genai_platform.events import CloudEvent, Delivery
from genai_platform.idempotency import SeenEvents

DIMENSIONS = 8


@pytest.mark.parametrize(
    ("revision", "indexed", "deleted", "verdict"),
    [
        (1, None, None, Verdict.INDEX),  # the first ingestion
        (1, 1, None, Verdict.INDEX),  # another part of it, or a redelivery
        (1, None, 1, Verdict.DELETED),  # deleted before its event arrived
        (1, None, 2, Verdict.DELETED),  # a later revision was deleted too
        (2, None, 1, Verdict.INDEX),  # the same content ingested again after the delete
        (2, 1, None, Verdict.REPLACE),  # ... whose delete has not arrived yet
        (1, 2, 1, Verdict.DELETED),
        (1, 2, None, Verdict.STALE),  # older than what the index holds
        (3, 2, 2, Verdict.REPLACE),
    ],
)
def test_verdicts_on_ingested(revision, indexed, deleted, verdict) -> None:
    assert judge_ingested(revision, indexed, deleted) is verdict


def test_a_delete_removes_its_revision_and_older_ones_only() -> None:
    assert delete_removes(1, 1) and delete_removes(1, 2)
    assert not delete_removes(2, 1)  # re-ingested and indexed before this old delete arrived
    assert not delete_removes(None, 1)


def test_a_tombstone_only_moves_up() -> None:
    stone = Tombstone(2).buried_again(1, 3).refused_one()
    assert stone == Tombstone(revision=2, chunks_removed=3, late_events_refused=1)
    assert stone.buried_again(5, 0).revision == 5


def test_the_index_knows_each_documents_revision() -> None:
    index = ChunkIndex(DIMENSIONS)
    chunk = IndexedChunk("d:0", "d", 0, "text", "h", "title", "c", revision=3)
    assert index.revision("d") is None
    index.add([chunk], np.ones((1, DIMENSIONS), dtype=np.float32))
    assert index.revision("d") == 3 and index.chunk_ids("d") == {"d:0"}
    index.remove_document("d")
    assert index.revision("d") is None and index.chunk_ids("d") == set()


# --- the indexer, events in every order ------------------------------------------------------


class CountingEmbedder:
    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self.embedded: list[str] = []

    async def embed(self, texts: list[str]) -> Embeddings:
        self.embedded += texts
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIMENSIONS], dtype=np.uint8) for t in texts]
        vectors = np.stack(rows).astype(np.float32) + 1
        return Embeddings(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), len(texts))


class Features:
    """One features app's indexer, over a fake sidecar."""

    def __init__(self, dapr: FakeDapr | None = None) -> None:
        self.dapr = dapr or FakeDapr(app_id="features")
        sidecar = self.dapr.sidecar()
        self.embedder = CountingEmbedder()
        self.index = ChunkIndex(DIMENSIONS)
        self.store = IndexStore(sidecar)
        self.indexer = Indexer(sidecar, self.embedder, self.index, self.store)  # type: ignore[arg-type]
        seen_events = SeenEvents(sidecar=sidecar, consumer="features")
        # What the app's routes read from `request.app.state`.
        self.request = SimpleNamespace(
            app=SimpleNamespace(state=SimpleNamespace(indexer=self.indexer, seen_events=seen_events))
        )

    async def deliver(self, event: CloudEvent) -> Delivery:
        """Deliver as the sidecar would: through features' declared subscription of the topic."""
        subscription = next(s for s in subscriptions.declared if s.topic == event.topic)
        return await subscription.deliver(self.request, event)  # type: ignore[arg-type]


_ids = itertools.count()


def ingested(revision: int, part: int = 0, parts: int = 1, texts: tuple[str, ...] = ("Tides follow the moon.",)):
    chunks = [
        {
            "id": f"doc-1:{part * 10 + i}",
            "index": part * 10 + i,
            "text": t,
            "hash": hashlib.sha256(t.encode()).hexdigest(),
        }
        for i, t in enumerate(texts)
    ]
    data = {
        "document_id": "doc-1",
        "title": "Tides",
        "revision": revision,
        "part": part,
        "parts": parts,
        "chunks": chunks,
    }
    return CloudEvent(id=f"e-{next(_ids)}", topic="documents.ingested", data=data)


def deleted(revision: int) -> CloudEvent:
    return CloudEvent(
        id=f"e-{next(_ids)}", topic="documents.deleted", data={"document_id": "doc-1", "revision": revision}
    )


def run(features: Features, events: list[CloudEvent]) -> list[Delivery]:
    async def deliver_all() -> list[Delivery]:
        return [await features.deliver(event) for event in events]

    return asyncio.run(deliver_all())


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_ingested_then_deleted_in_any_order_leaves_nothing(order) -> None:
    events = [ingested(1), deleted(1)]
    features = Features()
    assert run(features, [events[i] for i in order]) == [Delivery.SUCCESS] * 2
    assert features.index.revision("doc-1") is None and len(features.index) == 0
    assert features.dapr.state.get("manifest", {"parts": {}})["parts"] == {}
    stone = asyncio.run(features.store.tombstone("doc-1"))
    assert stone is not None and stone.revision == 1
    # Either the delete removed the chunk, or the late event was refused: never both, never neither.
    assert (stone.chunks_removed, stone.late_events_refused) == ((1, 0) if order == (0, 1) else (0, 1))


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_ingested_deleted_and_ingested_again_in_any_order_leaves_the_second(order) -> None:
    events = [ingested(1), deleted(1), ingested(2)]
    features = Features()
    run(features, [events[i] for i in order])
    assert features.index.revision("doc-1") == 2
    assert features.index.chunk_ids("doc-1") == {"doc-1:0"}
    # Rebuilt from state (a restart), the index holds the same.
    rebuilt = ChunkIndex(DIMENSIONS)
    asyncio.run(features.store.load(rebuilt))
    assert rebuilt.revision("doc-1") == 2 and rebuilt.chunk_ids("doc-1") == {"doc-1:0"}


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_two_ingestions_both_deleted_in_any_order_leave_nothing(order) -> None:
    events = [ingested(1), deleted(1), ingested(2), deleted(2)]
    features = Features()
    run(features, [events[i] for i in order])
    assert features.index.revision("doc-1") is None and len(features.index) == 0
    assert asyncio.run(features.store.tombstone("doc-1")).revision == 2


def test_a_newer_revision_replaces_every_part_of_an_older_one() -> None:
    features = Features()
    two_parts = [ingested(1, part=0, parts=2, texts=("A.", "B.")), ingested(1, part=1, parts=2, texts=("C.",))]
    run(features, two_parts)
    assert features.index.chunk_ids("doc-1") == {"doc-1:0", "doc-1:1", "doc-1:10"}
    # Chunked differently the second time (one part): the old part 1 must not linger.
    run(features, [ingested(2, texts=("A.", "B."))])
    assert features.index.chunk_ids("doc-1") == {"doc-1:0", "doc-1:1"}
    assert features.embedder.embedded == ["A.", "B.", "C."]  # same chunk, same text: not embedded again
    assert list(features.dapr.state["manifest"]["parts"]["doc-1"]) == [0]


def test_idempotent_on_the_event_id_and_on_chunk_hashes() -> None:
    features = Features()
    event = ingested(1)
    run(features, [event, event, ingested(1)])  # a redelivery, then a republish (fresh id)
    assert features.embedder.embedded == ["Tides follow the moon."]
    assert [event.topic for event in features.dapr.published] == ["chunks.indexed", "chunks.indexed"]
    late = deleted(1)
    run(features, [late, ingested(1), late])
    assert len(features.index) == 0
    assert asyncio.run(features.store.tombstone("doc-1")) == Tombstone(1, chunks_removed=1, late_events_refused=1)


def test_events_from_before_revisions_are_revision_one() -> None:
    features = Features()
    old = ingested(1)
    old.data.pop("revision")
    old_delete = CloudEvent(id="e-old-delete", topic="documents.deleted", data={"document_id": "doc-1"})
    run(features, [old_delete, old])
    assert len(features.index) == 0
    run(features, [ingested(2)])
    assert features.index.revision("doc-1") == 2


def test_text_repeated_across_a_parts_chunks_is_embedded_once() -> None:
    """A 9 MB upload of one paragraph over and over: each part's repeated chunks take one vector."""
    features = Features()
    run(features, [ingested(1, texts=("Same.", "Other.", "Same.", "Same."))])
    assert features.embedder.embedded == ["Same.", "Other."]
    assert features.index.chunk_ids("doc-1") == {"doc-1:0", "doc-1:1", "doc-1:2", "doc-1:3"}
    vectors = [features.index.vector(f"doc-1:{i}") for i in range(4)]
    assert np.array_equal(vectors[0], vectors[3]) and not np.array_equal(vectors[0], vectors[1])
