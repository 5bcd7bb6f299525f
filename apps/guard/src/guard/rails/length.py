"""Length limits in tokens, estimated without a tokenizer (the guard loads no model).

BPE tokenizers spend about one token per short word and one per ~4 characters of a long word or
of digits and symbols; the estimate follows that and errs high, which is the safe side.
"""

from __future__ import annotations

import re

from guard.rails import Finding, Scan

_PIECES = re.compile(r"[A-Za-z]+|\d{1,3}|[^\sA-Za-z\d]")


def estimate_tokens(text: str) -> int:
    """About how many BPE tokens `text` is: one per word of up to 6 letters, one per 4 characters of longer ones."""
    tokens = 0
    for match in _PIECES.finditer(text):
        piece = match.group()
        tokens += 1 if len(piece) <= 6 else -(-len(piece) // 4)
    return tokens


def scan(text: str, max_tokens: int, max_chars: int | None = None) -> Scan:
    """A "too_many_tokens" or "too_many_chars" finding over the whole text when it is over a limit,
    naming the policy setting (`length.max_tokens`, `length.max_chars`) and its value."""
    tokens = estimate_tokens(text)
    findings = []
    if tokens > max_tokens:
        detail = f"about {tokens} tokens, limit {max_tokens}"
        findings.append(
            Finding("too_many_tokens", 0, len(text), detail=detail, limit="length.max_tokens", limit_value=max_tokens)
        )
    if max_chars is not None and len(text) > max_chars:
        detail = f"{len(text)} characters, limit {max_chars}"
        findings.append(
            Finding("too_many_chars", 0, len(text), detail=detail, limit="length.max_chars", limit_value=max_chars)
        )
    return Scan(1.0 if findings else 0.0, tuple(findings))
