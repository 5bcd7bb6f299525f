"""Chunking measured in tokens of the embedding model, breaking on headings and paragraphs first."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

_HEADING = re.compile(r"^#{1,6} \S")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class TokenCounter:
    """Counts tokens with the embedding model's own tokenizer (tokenizer.json, no torch)."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # Count the text's own tokens; the model adds [CLS]/[SEP] itself.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        """Tokens in `text`, special tokens not counted."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str, size: int) -> list[str]:
        """Cut text into pieces of at most `size` tokens, at token boundaries."""
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        pieces = []
        for start in range(0, len(offsets), size):
            window = offsets[start : start + size]
            pieces.append(text[window[0][0] : window[-1][1]])
        return [piece.strip() for piece in pieces if piece.strip()]


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document: its position, text, size in tokens and heading path."""

    index: int
    text: str
    tokens: int
    heading: str | None

    @property
    def hash(self) -> str:
        """sha256 of the text (hex): an unchanged chunk keeps its hash, so its vector can be reused."""
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class ChunkingPolicy:
    """Chunk size and overlap, in tokens; raises ValueError unless size >= 8 and 0 <= overlap < size/2."""

    size: int = 200
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.size < 8 or not 0 <= self.overlap < self.size // 2:
            raise ValueError("chunk size must be >= 8 and overlap in [0, size/2)")


class Chunker:
    """Packs paragraphs into chunks of at most `size` tokens.

    A heading always starts a new chunk, and the heading path (e.g. "Setup > Linux") travels
    with each chunk so a chunk cut from the middle of a section still says what it is about.
    Paragraphs fill a chunk whole; a paragraph too long is cut at sentences, then at tokens.
    Consecutive chunks of one section share `overlap` tokens of text.
    """

    def __init__(self, count: Callable[[str], int], split: Callable[[str, int], list[str]], policy: ChunkingPolicy):
        self._count = count
        self._split = split
        self.policy = policy

    def chunks(self, text: str) -> list[Chunk]:
        """`text` (markdown headings understood) as chunks, numbered from 0."""
        out: list[Chunk] = []
        for heading, paragraphs in _sections(text):
            for piece in self._pack(paragraphs):
                out.append(Chunk(len(out), piece, self._count(piece), heading))
        return out

    def _units(self, paragraphs: list[str]) -> Iterator[tuple[str, int, str]]:
        # (text, tokens, separator before it): paragraphs that fit, else sentences that fit,
        # else token windows; pieces of one paragraph are joined back with a space.
        for paragraph in paragraphs:
            tokens = self._count(paragraph)
            if tokens <= self.policy.size:
                yield paragraph, tokens, "\n\n"
                continue
            separator = "\n\n"
            for sentence in _SENTENCE_END.split(paragraph):
                n = self._count(sentence)
                window = self.policy.size - self.policy.overlap
                pieces = (
                    [(sentence, n)]
                    if n <= self.policy.size
                    else [(piece, self._count(piece)) for piece in self._split(sentence, window)]
                )
                for piece, count in pieces:
                    yield piece, count, separator
                    separator = " "

    def _pack(self, paragraphs: list[str]) -> Iterator[str]:
        size, overlap = self.policy.size, self.policy.overlap
        current = ""
        used = 0
        fresh = False  # whether `current` holds anything beyond the carried-over overlap
        for unit, tokens, separator in self._units(paragraphs):
            if current and used + tokens + 1 > size:
                if fresh:
                    yield current
                current, used = self._tail(current, overlap, size - tokens - 1)
                separator = " "
                fresh = False
            current = f"{current}{separator}{unit}" if current else unit
            used += tokens + (1 if used else 0)
            fresh = True
        if current and fresh:
            yield current

    def _tail(self, text: str, overlap: int, room: int) -> tuple[str, int]:
        """The last words of the previous chunk, up to `overlap` tokens, within `room`."""
        budget = min(overlap, room)
        if budget <= 0:
            return "", 0
        words = text.split()
        tail: list[str] = []
        for word in reversed(words):
            candidate = [word, *tail]
            if self._count(" ".join(candidate)) > budget:
                break
            tail = candidate
        if not tail:
            return "", 0
        kept = " ".join(tail)
        return kept, self._count(kept)


def _sections(text: str) -> Iterator[tuple[str | None, list[str]]]:
    """(heading path, paragraphs) per section; a heading line opens a section."""
    path: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    heading: str | None = None
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if not block:
            continue
        lines = block.split("\n")
        for start, line in enumerate(lines):
            if _HEADING.match(line):
                if paragraphs:
                    yield heading, paragraphs
                    paragraphs = []
                level = len(line) - len(line.lstrip("#"))
                title = line.lstrip("#").strip()
                path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
                heading = " > ".join(t for _, t in path)
                paragraphs.append(line)
                rest = "\n".join(lines[start + 1 :]).strip()
                if rest:
                    # Body text glued under the heading with no blank line in between.
                    paragraphs.append(rest)
                break
        else:
            paragraphs.append(block)
    if paragraphs:
        yield heading, paragraphs
