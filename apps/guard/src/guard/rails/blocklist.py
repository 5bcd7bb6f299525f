"""Blocked terms and denied topics: whole words and phrases, case-insensitive, on folded text."""

from __future__ import annotations

import re
from functools import lru_cache

from guard.rails import Finding, Scan, partial_patterns, unsettled_start
from guard.rails.unicode import fold


@lru_cache(maxsize=64)
def _compile(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    # Longest first, so "nerve agent" wins over "nerve"; \s+ lets "build  a   bomb" match too.
    alternatives = sorted({p.strip().lower() for p in phrases if p.strip()}, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, phrase.split())) for phrase in alternatives)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


def scan(text: str, terms: tuple[str, ...] = (), topics: dict[str, tuple[str, ...]] | None = None) -> Scan:
    """Findings "term" and "topic:<name>" for each blocked phrase in `text` (score 1.0 on any finding).

    Matching is on the folded text (look-alikes and case folded, positions unchanged).
    """
    folded = fold(text)
    findings: list[Finding] = []
    pattern = _compile(tuple(terms))
    if pattern is not None:
        findings += [Finding("term", *m.span()) for m in pattern.finditer(folded)]
    for topic, phrases in (topics or {}).items():
        pattern = _compile(tuple(phrases))
        if pattern is not None:
            findings += [Finding(f"topic:{topic}", *m.span()) for m in pattern.finditer(folded)]
    findings.sort(key=lambda f: f.start)
    return Scan(1.0 if findings else 0.0, tuple(findings))


@lru_cache(maxsize=64)
def _partial(phrases: tuple[str, ...]) -> tuple:
    pattern = _compile(phrases)
    return partial_patterns([pattern]) if pattern is not None else ()


def unsettled(text: str, terms: tuple[str, ...] = (), topics: dict[str, tuple[str, ...]] | None = None) -> int:
    """Streaming: where the tail that more text could turn into a blocked phrase starts ("build a"
    before "bomb"); `len(text)` when there is none. Derived from the rail's own patterns."""
    if not terms and not topics:
        return len(text)
    folded = fold(text)
    groups = [tuple(terms), *(tuple(phrases) for phrases in (topics or {}).values())]
    return min((unsettled_start(_partial(group), folded) for group in groups), default=len(text))
