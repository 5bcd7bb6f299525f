"""BM25, the chunk index and the search modes, over hand-made vectors (no model)."""

import numpy as np
import pytest

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


def reference_search(index: ChunkIndex, query_vector: np.ndarray, query: str, params: SearchParams) -> list:
    """The search as written before the collection table (a scan of every chunk per search): the
    fast path must rank exactly as this does."""
    matrix, chunks = index.matrix()
    pool = max(50, params.k * 10)
    allowed = None if params.collection is None else {c.id for c in chunks if c.collection == params.collection}
    vector_scores, keyword_scores = {}, {}
    if params.mode in (Mode.VECTOR, Mode.HYBRID):
        similarities = matrix @ query_vector
        if allowed is not None:
            similarities = np.where([c.id in allowed for c in chunks], similarities, -np.inf)
        best = np.argsort(-similarities)[:pool]
        vector_scores = {chunks[i].id: float(similarities[i]) for i in best if np.isfinite(similarities[i])}
    if params.mode in (Mode.KEYWORD, Mode.HYBRID):
        raw = {key: value for key, value in index.keywords.scores(query).items() if allowed is None or key in allowed}
        keyword_scores = dict(sorted(raw.items(), key=lambda item: item[1], reverse=True)[:pool])
    if params.mode is Mode.VECTOR:
        combined = vector_scores
    elif params.mode is Mode.KEYWORD:
        combined = keyword_scores
    else:

        def normalised(scores: dict) -> dict:
            low, high = min(scores.values(), default=0), max(scores.values(), default=0)
            return {key: (value - low) / (high - low) if high > low else 1.0 for key, value in scores.items()}

        v, kw = normalised(vector_scores), normalised(keyword_scores)
        combined = {key: (v.get(key, 0.0) + kw.get(key, 0.0)) / 2 for key in v.keys() | kw.keys()}
    ranked = sorted(combined, key=lambda key: combined[key], reverse=True)[: params.k]
    return [(key, combined[key], vector_scores.get(key), keyword_scores.get(key)) for key in ranked]


def test_a_collections_search_ranks_as_a_scan_of_every_chunk_does() -> None:
    # 2,000 chunks in 12 collections, then documents removed (rows move) and chunks moved to
    # another collection, so the index's collection table must follow every change.
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(300)]
    index = ChunkIndex(16)

    def text() -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(3, 30))))

    def vectors(n: int) -> np.ndarray:
        raw = rng.standard_normal((n, 16)).astype(np.float32)
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)

    made = [chunk(n, text(), f"c{n % 12}") for n in range(2000)]
    index.add(made, vectors(len(made)))
    for n in range(0, 2000, 7):
        index.remove_document(f"d{n}")
    moved = [chunk(n, text(), "c-moved") for n in range(3, 2000, 11) if index.get(f"d{n}:0")]
    index.add(moved, vectors(len(moved)))
    matrix, chunks = index.matrix()
    for collection in {c.collection for c in chunks}:
        rows = index.collection_rows(collection)
        assert [chunks[row].collection for row in rows] == [collection] * len(rows)
        assert len(rows) == sum(c.collection == collection for c in chunks)
    assert not index.has_collection("c0-gone") and len(index.collection_rows("c0-gone")) == 0

    compared = 0
    for collection in [None, "c1", "c5", "c-moved", "absent"]:
        for _ in range(8):
            query_vector = vectors(1)[0]
            query = " ".join(rng.choice(words, size=3))
            for mode in Mode:
                params = SearchParams(k=int(rng.integers(1, 12)), mode=mode, collection=collection)
                fast = [
                    (h.chunk.id, h.score, h.vector_score, h.keyword_score)
                    for h in search(index, query_vector, query, params)
                ]
                slow = reference_search(index, query_vector, query, params)
                # Same chunks in the same order; scores equal to float32's rounding (a BLAS product
                # over a collection's rows may differ from the whole matrix's in the last bit).
                assert [hit[0] for hit in fast] == [hit[0] for hit in slow], (collection, mode)
                for got, want in zip(fast, slow, strict=True):
                    for value, expected in zip(got[1:], want[1:], strict=True):
                        assert value == (None if expected is None else pytest.approx(expected, rel=1e-5, abs=1e-6))
                compared += bool(slow)
    assert compared > 80  # most searches found something to compare


def test_a_hybrid_search_with_both_weights_at_zero_is_refused_naming_them() -> None:
    """A new-user trial: both at 0 scored every chunk 0, the relevant one ranked last, and it was a 200."""
    from pydantic import ValidationError  # noqa: PLC0415

    from features.routes import SearchRequest  # noqa: PLC0415

    with pytest.raises(ValidationError) as refused:
        SearchRequest.model_validate({"query": "tides", "vector_weight": 0, "keyword_weight": 0})
    [error] = refused.value.errors()
    assert error["loc"] == ("keyword_weight",) and "both 0" in error["msg"]
    # One weight above 0 is a hybrid score; and the weights mean nothing to the other modes.
    assert SearchRequest.model_validate({"query": "tides", "vector_weight": 0, "keyword_weight": 1}).keyword_weight == 1
    vector = {"query": "tides", "mode": "vector", "vector_weight": 0, "keyword_weight": 0}
    assert SearchRequest.model_validate(vector).mode is Mode.VECTOR
