"""The features service's search answer: the chunks that answer a query, best first.

Its `/v1/search` route declares `SearchResults` as the response model; the gateway's
`SearchClient` parses the answer with it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class SearchHit(BaseModel):
    """One chunk found: where it comes from, its text, and its scores (higher is closer).

    `score` is the fused score the results are ordered by; `vector_score` (cosine similarity) and
    `keyword_score` (BM25) are the parts, None for a mode that did not compute one.
    """

    chunk_id: str
    document_id: str
    title: str | None = None
    collection: str | None = None
    heading: str | None = None
    index: int = Field(description="The chunk's position in its document, from 0.")
    text: str
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None


class SearchResults(BaseModel):
    """A search's answer: the query, the mode used (`vector`, `keyword` or `hybrid`) and the hits."""

    query: str
    mode: str
    results: list[SearchHit]
