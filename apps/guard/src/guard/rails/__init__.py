"""Rails: each module scans text for one kind of risk and reports findings with positions.

A rail never decides what happens; the policy does (block, redact or flag). Findings carry
positions and kinds, never the matched text, so they can be logged and published safely.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Finding:
    """One risky span of the scanned text: its `kind` (e.g. "email", "tag_characters"), the
    character offsets [start, end), a `score` in [0, 1], what redaction puts there, and a `detail`
    that never quotes the text."""

    kind: str
    start: int
    end: int
    score: float = 1.0
    # What redaction puts in place of [start, end); None means a `[REDACTED:KIND]` marker.
    replacement: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Scan:
    """One rail's answer: a score in [0, 1] and what it found."""

    score: float = 0.0
    findings: tuple[Finding, ...] = field(default_factory=tuple)


CLEAN = Scan()


def combined_score(scores: Iterable[float]) -> float:
    """Independent signals: the chance that at least one of them is right."""
    miss = 1.0
    for score in scores:
        miss *= 1.0 - min(max(score, 0.0), 1.0)
    return round(1.0 - miss, 4)


def drop_overlaps(findings: Iterable[Finding], priority: dict[str, int] | None = None) -> list[Finding]:
    """Keep one finding per stretch of text: the higher priority kind, then the longer span."""
    priority = priority or {}
    ranked = sorted(findings, key=lambda f: (-priority.get(f.kind, 0), -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with each finding's span replaced, right to left so positions stay valid."""
    out = text
    for finding in sorted(drop_overlaps(findings), key=lambda f: f.start, reverse=True):
        replacement = finding.replacement if finding.replacement is not None else f"[REDACTED:{finding.kind.upper()}]"
        out = out[: finding.start] + replacement + out[finding.end :]
    return out
