"""Blocked terms and denied topics: whole words and phrases, case-insensitive, on folded text."""

from __future__ import annotations

import re
from functools import lru_cache

from guard.rails import Finding, Scan
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
