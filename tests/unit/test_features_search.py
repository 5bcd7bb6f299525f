"""BM25, the chunk index and the search modes, over hand-made vectors (no model)."""

import numpy as np

from features.bm25 import BM25Index, terms
from features.index import ChunkIndex, IndexedChunk, decode_vector, encode_vector
from features.search import Mode, SearchParams, search


def chunk(n: int, text: str, collection: str = "c", document: str | None = None) -> IndexedChunk:
    return IndexedChunk(f"d{n}:0", document or f"d{n}", 0, text, f"h{n}", f"title {n}", collection)


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_terms_fold_case_accents_plurals_and_stopwords() -> None:
    assert terms("The Cafés are brewing coffees") == ["cafe", "brew", "coffee"]


def test_bm25_prefers_rare_terms_and_forgets_removed_chunks() -> None:
    bm25 = BM25Index()
    bm25.add("a", "the cat sat on the mat")
    bm25.add("b", "the dog sat on the log")
    bm25.add("c", "a zebra")
    scores = bm25.scores("zebra sat")
    assert max(scores, key=scores.get) == "c"
    bm25.remove("c")
    assert "c" not in bm25.scores("zebra") and len(bm25) == 2
    bm25.add("a", "replaced text")  # re-adding replaces, never duplicates
    assert "a" not in bm25.scores("cat") and len(bm25) == 2


def test_index_adds_once_per_chunk_id_and_removes_by_document() -> None:
    index = ChunkIndex(2)
    index.add([chunk(1, "one"), chunk(2, "two")], np.stack([unit(1, 0), unit(0, 1)]))
    index.add([chunk(1, "one")], np.stack([unit(1, 0)]))
    assert len(index) == 2
    assert index.remove_document("d1") == 1
    matrix, chunks = index.matrix()
    assert [c.id for c in chunks] == ["d2:0"] and np.allclose(matrix[0], unit(0, 1))
    assert np.allclose(decode_vector(encode_vector(unit(3, 4))), unit(3, 4))


def test_a_collection_exists_while_an_indexed_chunk_is_in_it() -> None:
    index = ChunkIndex(2)
    index.add([chunk(1, "one", "ops"), chunk(2, "two", "hr")], np.stack([unit(1, 0), unit(0, 1)]))
    assert index.has_collection("ops") and not index.has_collection("nope")
    index.remove_document("d1")
    assert not index.has_collection("ops") and index.has_collection("hr")


def test_modes_and_collection_filter() -> None:
    index = ChunkIndex(2)
    index.add(
        [chunk(1, "apples and pears"), chunk(2, "quantum physics"), chunk(3, "apples again", "other")],
        np.stack([unit(1, 0), unit(0, 1), unit(1, 0.1)]),
    )
    query = unit(0.1, 1)  # "near" physics
    vector = search(index, query, "apples", SearchParams(k=1, mode=Mode.VECTOR))
    keyword = search(index, None, "apples", SearchParams(k=1, mode=Mode.KEYWORD, collection="c"))
    assert vector[0].chunk.id == "d2:0"
    assert keyword[0].chunk.id == "d1:0"
    hybrid = search(index, query, "apples", SearchParams(k=3, mode=Mode.HYBRID, collection="c"))
    assert {hit.chunk.id for hit in hybrid} == {"d1:0", "d2:0"}
    assert all(hit.chunk.collection == "c" for hit in hybrid)


def test_mmr_skips_near_duplicates() -> None:
    index = ChunkIndex(2)
    index.add(
        [chunk(1, "a"), chunk(2, "a copy"), chunk(3, "different")],
        np.stack([unit(1, 0), unit(1, 0.01), unit(0.6, 0.8)]),
    )
    plain = search(index, unit(1, 0), "", SearchParams(k=2, mode=Mode.VECTOR))
    diverse = search(index, unit(1, 0), "", SearchParams(k=2, mode=Mode.VECTOR, mmr=True, mmr_lambda=0.3))
    assert [h.chunk.id for h in plain] == ["d1:0", "d2:0"]
    assert [h.chunk.id for h in diverse] == ["d1:0", "d3:0"]
