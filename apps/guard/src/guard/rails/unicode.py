"""Unicode smuggling: invisible characters, tag characters, bidi controls and homoglyphs.

Hidden text is decoded, not just removed: instructions written in tag characters (U+E0000 to
U+E007F) or variation selectors are invisible to a person and readable by a model, so the
injection rail scans what they spell. Emoji sequences that legitimately use these characters
(flag tag sequences, ZWJ sequences, the emoji presentation selector) are left alone.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from guard.rails import Finding, Scan, combined_score

ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e\u00ad")
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
BLACK_FLAG = "\U0001f3f4"  # starts the subdivision flags (England, Scotland, Wales): tag characters follow
ZWJ = "\u200d"

# Latin look-alikes from Cyrillic and Greek, one character to one, so positions do not move.
CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁһӏѵԛԝАВЕКМНОРСТХІЈЅԜΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοερυνικτ",
    "aeopcyxijsdhlvqwABEKMHOPCTXIJSWABEZHIKMNOPTYXaoepuvikt",
)
_CONFUSABLE_CODEPOINTS = frozenset(map(chr, CONFUSABLES))


@dataclass(frozen=True, slots=True)
class UnicodeScan:
    """The unicode rail's answer: its findings, the text without invisible characters, and any text
    hidden in tag characters or variation selectors (for the injection rail to read)."""

    scan: Scan
    sanitized: str  # invisible and control characters removed
    hidden: str  # text spelled by tag characters or variation selectors


def _is_emoji(char: str) -> bool:
    return unicodedata.category(char) == "So" or 0x1F000 <= ord(char) <= 0x1FAFF


def scan(text: str) -> UnicodeScan:
    """Smuggled or invisible characters in `text`, by finding kind: `tag_characters`,
    `variation_selectors`, `bidi_control`, `zero_width`, and `mixed_script` (look-alike letters)."""
    if text.isascii():  # the common case: nothing to smuggle in ASCII
        return UnicodeScan(Scan(), text, "")
    findings: list[Finding] = []
    kept: list[str] = []
    hidden: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        code = ord(char)
        if 0xE0000 <= code <= 0xE007F:
            start = i
            while i < n and 0xE0000 <= ord(text[i]) <= 0xE007F:
                i += 1
            run = text[start:i]
            if start > 0 and text[start - 1] == BLACK_FLAG and run.endswith("\U000e007f"):
                kept.append(run)  # a subdivision flag such as Scotland's, not smuggling
                continue
            hidden.append("".join(chr(ord(c) - 0xE0000) for c in run if 0x20 <= ord(c) - 0xE0000 < 0x7F))
            findings.append(Finding("tag_characters", start, i, 1.0, replacement=""))
            continue
        if 0xE0100 <= code <= 0xE01EF or 0xFE00 <= code <= 0xFE0F:
            start = i
            while i < n and (0xE0100 <= ord(text[i]) <= 0xE01EF or 0xFE00 <= ord(text[i]) <= 0xFE0F):
                i += 1
            run = text[start:i]
            if len(run) == 1 and start > 0 and (_is_emoji(text[start - 1]) or run == "\ufe0e"):
                kept.append(run)  # emoji or text presentation of the previous character
                continue
            # Each selector carries a byte (the "emoji smuggling" encoding).
            data = bytes((ord(c) - 0xE0100 + 16) if ord(c) >= 0xE0100 else (ord(c) - 0xFE00) for c in run)
            hidden.append(data.decode("utf-8", errors="ignore"))
            findings.append(Finding("variation_selectors", start, i, 0.9 if len(run) > 2 else 0.4, replacement=""))
            continue
        if char in ZERO_WIDTH:
            prev_char, next_char = text[i - 1] if i else "", text[i + 1] if i + 1 < n else ""
            if char == ZWJ and prev_char and next_char and _is_emoji(prev_char) and _is_emoji(next_char):
                kept.append(char)  # 👨‍👩‍👧: an emoji ZWJ sequence
            elif char == "\u200c" and prev_char and not prev_char.isascii():
                kept.append(char)  # ZWNJ shapes Persian and Indic words
            else:
                findings.append(Finding("zero_width", i, i + 1, 0.35, replacement=""))
            i += 1
            continue
        if char in BIDI_CONTROLS:
            score = 0.8 if char in "\u202d\u202e" else 0.5  # overrides reorder what a reader sees
            findings.append(Finding("bidi_control", i, i + 1, score, replacement=""))
            i += 1
            continue
        kept.append(char)
        i += 1
    sanitized = "".join(kept)
    findings.extend(_mixed_script_words(text))
    # Many zero-width characters are one signal, not many independent ones.
    by_kind: dict[str, float] = {}
    for finding in findings:
        by_kind[finding.kind] = max(by_kind.get(finding.kind, 0.0), finding.score)
    if sum(f.kind == "zero_width" for f in findings) >= 3:
        by_kind["zero_width"] = 0.8
    return UnicodeScan(Scan(combined_score(by_kind.values()), tuple(findings)), sanitized, "".join(hidden))


def _mixed_script_words(text: str) -> list[Finding]:
    """Words mixing Latin letters with Cyrillic or Greek look-alikes (`pаypal` with a Cyrillic a)."""
    findings = []
    start = None
    for i, char in enumerate(text + " "):
        if char.isalpha():
            if start is None:
                start = i
            continue
        if start is not None:
            word = text[start:i]
            if any(c in _CONFUSABLE_CODEPOINTS for c in word) and any("a" <= c.lower() <= "z" for c in word):
                findings.append(Finding("mixed_script", start, i, 0.5, detail="Latin mixed with look-alike letters"))
            start = None
    return findings


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    folded = char.translate(CONFUSABLES)
    if folded != char:
        return folded
    normal = unicodedata.normalize("NFKC", char)
    if len(normal) == 1 and normal.isascii():
        return normal  # fullwidth and mathematical letters (ｉｇｎｏｒｅ, 𝐢𝐠𝐧𝐨𝐫𝐞)
    return char


def fold(text: str) -> str:
    """A same-length copy for matching: look-alike and compatibility letters mapped to ASCII."""
    if text.isascii():
        return text
    return "".join(map(_fold_char, text))
