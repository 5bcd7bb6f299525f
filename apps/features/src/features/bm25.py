"""A BM25 keyword index that takes additions and removals one chunk at a time."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Collection

_WORD = re.compile(r"[a-z0-9]+")
# Words too common to say what a text is about (a short English list; BM25's idf does the rest).
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def _stem(word: str) -> str:
    # Plural and -ing/-ed forms match their base word; deliberately crude, and the same for
    # texts and queries, which is all BM25 needs.
    if len(word) <= 4 or word.endswith("ss"):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """`text`'s index terms: lower-cased, accents stripped, stop words dropped, suffixes stemmed."""
    folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
    return [_stem(word) for word in _WORD.findall(folded) if word not in _STOPWORDS]


class BM25Index:
    """Okapi BM25 (k1, b) over chunk ids, with incremental add and remove."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[str, int]] = defaultdict(dict)
        self._lengths: dict[str, int] = {}
        self._terms: dict[str, list[str]] = {}
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, chunk_id: str) -> bool:
        return chunk_id in self._lengths

    def add(self, chunk_id: str, text: str) -> None:
        """Index `text` under `chunk_id`, replacing what that id held."""
        if chunk_id in self._lengths:
            self.remove(chunk_id)
        counts = Counter(terms(text))
        for term, count in counts.items():
            self._postings[term][chunk_id] = count
        length = sum(counts.values())
        self._lengths[chunk_id] = length
        self._terms[chunk_id] = list(counts)
        self._total_length += length

    def remove(self, chunk_id: str) -> None:
        """Forget `chunk_id` (nothing happens when it is not indexed)."""
        if chunk_id not in self._lengths:
            return
        for term in self._terms.pop(chunk_id):
            posting = self._postings[term]
            posting.pop(chunk_id, None)
            if not posting:
                del self._postings[term]
        self._total_length -= self._lengths.pop(chunk_id)

    def scores(self, query: str, only: Collection[str] | None = None) -> dict[str, float]:
        """BM25 score of every chunk sharing at least one term with the query (of those in `only`,
        when given: the statistics stay the whole index's, so a chunk scores as it would unfiltered)."""
        n = len(self._lengths)
        if n == 0:
            return {}
        average = self._total_length / n or 1.0
        out: dict[str, float] = defaultdict(float)
        for term in set(terms(query)):
            posting = self._postings.get(term)
            if not posting:
                continue
            idf = math.log(1.0 + (n - len(posting) + 0.5) / (len(posting) + 0.5))
            for chunk_id, tf in posting.items():
                if only is not None and chunk_id not in only:
                    continue
                norm = self.k1 * (1 - self.b + self.b * self._lengths[chunk_id] / average)
                out[chunk_id] += idf * tf * (self.k1 + 1) / (tf + norm)
        return dict(out)
