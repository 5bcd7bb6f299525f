"""Search over the chunk index: vector, keyword (BM25), hybrid, with optional MMR."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from features.index import ChunkIndex, IndexedChunk


class Mode(StrEnum):
    """Search by embedding similarity, by keywords (BM25), or both fused."""

    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class Hit:
    """One result: the chunk, its final score, and the vector and keyword scores behind it (None
    when that search did not run or did not find it)."""

    chunk: IndexedChunk
    score: float
    vector_score: float | None
    keyword_score: float | None


@dataclass(frozen=True)
class SearchParams:
    """How to search: `k` results, the mode, a collection filter, the fusion weights, and MMR
    re-ranking (`mmr_lambda` 1 = relevance only, 0 = diversity only)."""

    k: int = 5
    mode: Mode = Mode.HYBRID
    collection: str | None = None
    vector_weight: float = 0.5
    keyword_weight: float = 0.5
    mmr: bool = False
    mmr_lambda: float = 0.7


def _top(scores: dict[str, float], n: int) -> dict[str, float]:
    return dict(sorted(scores.items(), key=lambda item: item[1], reverse=True)[:n])


def _best(scores: np.ndarray, n: int) -> np.ndarray:
    """The positions of the `n` highest scores, highest first (ties: the lower position first)."""
    if len(scores) > n:
        # Partition first: only the `n` best are sorted, not every chunk of the index.
        candidates = np.argpartition(-scores, n - 1)[:n]
        candidates.sort()
        return candidates[np.argsort(-scores[candidates], kind="stable")]
    return np.argsort(-scores, kind="stable")


def _normalised(scores: dict[str, float]) -> dict[str, float]:
    # Min-max within the candidates: cosine and BM25 live on different scales, and only their
    # order within one query matters to the fusion.
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {key: (value - low) / span if span > 0 else 1.0 for key, value in scores.items()}


def search(index: ChunkIndex, query_vector: np.ndarray | None, query: str, params: SearchParams) -> list[Hit]:
    """The best `k` chunks for a query; `query_vector` is needed for vector and hybrid modes."""
    matrix, chunks = index.matrix()
    if not chunks or params.k <= 0:
        return []
    # A collection's chunks come from the index's own table (rows and ids), never from a scan of
    # every chunk in Python: that scan was most of a filtered search's time (bench/README.md).
    allowed = None if params.collection is None else index.collection_ids(params.collection)
    pool = max(50, params.k * 10)

    vector_scores: dict[str, float] = {}
    if params.mode in (Mode.VECTOR, Mode.HYBRID):
        assert query_vector is not None
        rows = None if params.collection is None else index.collection_rows(params.collection)
        similarities = (matrix if rows is None else matrix[rows]) @ query_vector
        best = _best(similarities, pool)
        row_of = best if rows is None else rows[best]
        vector_scores = {
            chunks[row].id: float(similarities[i])
            for row, i in zip(row_of, best, strict=True)
            if np.isfinite(similarities[i])
        }

    keyword_scores: dict[str, float] = {}
    if params.mode in (Mode.KEYWORD, Mode.HYBRID):
        keyword_scores = _top(index.keywords.scores(query, only=allowed), pool)

    if params.mode is Mode.VECTOR:
        combined = vector_scores
    elif params.mode is Mode.KEYWORD:
        combined = keyword_scores
    else:
        v, kw = _normalised(vector_scores), _normalised(keyword_scores)
        total = (params.vector_weight + params.keyword_weight) or 1.0
        combined = {
            key: (params.vector_weight * v.get(key, 0.0) + params.keyword_weight * kw.get(key, 0.0)) / total
            for key in v.keys() | kw.keys()
        }

    ranked = sorted(combined, key=lambda key: combined[key], reverse=True)
    chosen = _mmr(index, ranked[:pool], combined, params) if params.mmr else ranked[: params.k]
    return [
        Hit(index.get(key), combined[key], vector_scores.get(key), keyword_scores.get(key))  # type: ignore[arg-type]
        for key in chosen
    ]


def _mmr(index: ChunkIndex, candidates: list[str], relevance: dict[str, float], params: SearchParams) -> list[str]:
    """Maximal marginal relevance: each pick trades relevance against likeness to earlier picks."""
    if not candidates:
        return []
    # Scaled by the best score (not min-max): the weakest candidate keeps its real relevance.
    top = max(relevance[key] for key in candidates)
    normalised = {key: relevance[key] / top if top > 0 else 0.0 for key in candidates}
    vectors = np.stack([index.vector(key) for key in candidates])
    likeness = vectors @ vectors.T
    chosen: list[int] = []
    remaining = list(range(len(candidates)))
    while remaining and len(chosen) < params.k:

        def value(i: int) -> float:
            redundancy = max((likeness[i, j] for j in chosen), default=0.0)
            return params.mmr_lambda * normalised[candidates[i]] - (1 - params.mmr_lambda) * redundancy

        pick = max(remaining, key=value)
        chosen.append(pick)
        remaining.remove(pick)
    return [candidates[i] for i in chosen]
