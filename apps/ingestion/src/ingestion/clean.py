"""Text cleaning: one canonical form of a document's text, before hashing and chunking."""

from __future__ import annotations

import re
import unicodedata

# Invisible characters that change how text reads to a model but not to a person: zero-width
# spaces and joiners, word joiner, BOM, soft hyphen, and the bidirectional overrides (a known
# prompt-injection and homoglyph vector). NFKC keeps some of them, so they go explicitly.
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _is_control(char: str) -> bool:
    # Cc (C0/C1 controls) and Cf (format) categories, but newlines and tabs carry structure.
    return char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs")


def clean_text(text: str) -> str:
    """Unicode NFKC, invisible and control characters removed, whitespace normalised.

    Paragraph breaks (a blank line) survive, since chunking breaks on them; runs of spaces and
    tabs become one space, lines are stripped, and more than one blank line becomes one.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    text = "".join(char for char in text if not _is_control(char))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
