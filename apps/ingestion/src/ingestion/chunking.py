"""Chunking measured in tokens of the embedding model, breaking on headings and paragraphs first.

The text is tokenized once: every count afterwards (a paragraph's, a sentence's, a word's of the
overlap) is read off the tokens' character offsets. Counting by re-encoding each candidate
piece cost about 3 s per MB of text (half a million tokenizer calls for 9 MB, most of them for
the overlap's word-by-word search); read off the offsets, chunking is one pass of the tokenizer.
Counts add up across whitespace because the embedding model's pre-tokenizer (BERT's) never lets
a token span whitespace, so a chunk's tokens are the sum of its pieces' tokens.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

_HEADING = re.compile(r"#{1,6} \S")  # matched at a line's start (pattern.match)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_BLOCK_BREAK = re.compile(r"\n\s*\n")
_WORD = re.compile(r"\S+")
_LAST_SPACE = re.compile(r"\s(?=\S*\Z)")

# Token spans (start, end) in characters of the text given, in order.
Offsets = Sequence[tuple[int, int]]


class TokenCounter:
    """The embedding model's own tokenizer (tokenizer.json, no torch), as token offsets."""

    # Text is encoded in segments of at most this many characters, cut at whitespace, in one
    # batch call: one call on megabytes of text is several times slower than on its pieces.
    SEGMENT_CHARS = 4096

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # Count the text's own tokens; the model adds [CLS]/[SEP] itself.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Every token of `text` (special tokens not included) as its (start, end) character span."""
        cuts = list(_segments(text, self.SEGMENT_CHARS))
        encodings = self._tokenizer.encode_batch([text[a:b] for a, b in cuts], add_special_tokens=False)
        return [(a + s, a + e) for (a, _), encoding in zip(cuts, encodings, strict=True) for s, e in encoding.offsets]

    def count(self, text: str) -> int:
        """Tokens in `text`, special tokens not counted."""
        return len(self.offsets(text))


def _segments(text: str, limit: int) -> Iterator[tuple[int, int]]:
    """(start, end) spans covering `text`, each at most `limit` characters, cut after whitespace
    where there is any (a word longer than `limit` is cut where the limit falls)."""
    start = 0
    while start < len(text):
        end = min(start + limit, len(text))
        if end < len(text):
            space = _LAST_SPACE.search(text, start, end)
            if space is not None:
                end = space.end()
        yield start, end
        start = end


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


@dataclass(frozen=True)
class _Unit:
    """A piece that goes into a chunk whole: a span of the text, its tokens, the separator before it."""

    start: int
    end: int
    tokens: int
    separator: str


class _Tokens:
    """Counts of any span of one text, read off its token offsets."""

    def __init__(self, offsets: Offsets) -> None:
        self.offsets = offsets
        self._starts = [start for start, _ in offsets]

    def index(self, position: int) -> int:
        """The number of tokens that start before `position`."""
        return bisect_left(self._starts, position)

    def count(self, start: int, end: int) -> int:
        """Tokens that start inside [start, end)."""
        return self.index(end) - self.index(start)


class Chunker:
    """Packs paragraphs into chunks of at most `size` tokens.

    A heading always starts a new chunk, and the heading path (e.g. "Setup > Linux") travels
    with each chunk so a chunk cut from the middle of a section still says what it is about.
    Paragraphs fill a chunk whole; a paragraph too long is cut at sentences, then at tokens.
    Consecutive chunks of one section share `overlap` tokens of text (whole words).

    `tokenize` gives a text's token spans (`TokenCounter.offsets`); it is called once per
    document, and again only for a piece cut inside a word (a word longer than a chunk).
    """

    def __init__(self, tokenize: Callable[[str], Offsets], policy: ChunkingPolicy):
        self._tokenize = tokenize
        self.policy = policy

    def chunks(self, text: str) -> list[Chunk]:
        """`text` (markdown headings understood) as chunks, numbered from 0."""
        tokens = _Tokens(self._tokenize(text))
        out: list[Chunk] = []
        for heading, paragraphs in _sections(text):
            for piece, count in self._pack(text, tokens, self._units(text, tokens, paragraphs)):
                out.append(Chunk(len(out), piece, count, heading))
        return out

    def _units(self, text: str, tokens: _Tokens, paragraphs: list[tuple[int, int]]) -> Iterator[_Unit]:
        # Paragraphs that fit, else sentences that fit, else token windows; pieces of one
        # paragraph are joined back with a space.
        size = self.policy.size
        window = size - self.policy.overlap
        for start, end in paragraphs:
            count = tokens.count(start, end)
            if count <= size:
                yield _Unit(start, end, count, "\n\n")
                continue
            separator = "\n\n"
            for s_start, s_end in _sentences(text, start, end):
                n = tokens.count(s_start, s_end)
                pieces = (
                    [_Unit(s_start, s_end, n, "")] if n <= size else self._windows(text, tokens, s_start, s_end, window)
                )
                for piece in pieces:
                    yield _Unit(piece.start, piece.end, piece.tokens, separator)
                    separator = " "

    def _windows(self, text: str, tokens: _Tokens, start: int, end: int, window: int) -> list[_Unit]:
        """A sentence over the chunk size as pieces of at most `window` tokens, cut between words
        where a word boundary falls inside the window, else inside the word."""
        first, last = tokens.index(start), tokens.index(end)
        pieces: list[_Unit] = []
        cut: list[int] = []  # pieces cut inside a word: their tokens alone are counted again below
        at = first
        while at < last:
            stop = min(at + window, last)
            if stop < last:
                # Back to the last token that begins a word, so no word is split between pieces.
                boundary = next(
                    (i for i in range(stop, at, -1) if text[tokens.offsets[i][0] - 1].isspace()),
                    None,
                )
                stop = boundary if boundary is not None else stop
            a, b = tokens.offsets[at][0], tokens.offsets[stop - 1][1]
            if not ((at == first or text[a - 1].isspace()) and (stop == last or text[b].isspace())):
                cut.append(len(pieces))
            pieces.append(_Unit(a, b, stop - at, ""))
            at = stop
        if cut:
            # A piece cut inside a word reads differently alone ("able" is not "##able"): one more
            # pass over those pieces, joined by spaces (no token spans a space), counts each alone.
            texts = [text[pieces[i].start : pieces[i].end] for i in cut]
            again = _Tokens(self._tokenize(" ".join(texts)))
            position = 0
            for i, piece_text in zip(cut, texts, strict=True):
                count = again.count(position, position + len(piece_text))
                pieces[i] = _Unit(pieces[i].start, pieces[i].end, count, "")
                position += len(piece_text) + 1
        return pieces

    def _pack(self, text: str, tokens: _Tokens, units: Iterator[_Unit]) -> Iterator[tuple[str, int]]:
        """(chunk text, tokens) for a section's units, consecutive chunks sharing an overlap."""
        size, overlap = self.policy.size, self.policy.overlap
        tail: list[tuple[str, int]] = []  # the previous chunk's last words, carried over
        members: list[_Unit] = []
        used = 0  # the budget's count: one token of slack per join
        exact = 0
        fresh = False  # whether the chunk holds anything beyond the carried-over overlap
        for unit in units:
            if (tail or members) and used + unit.tokens + 1 > size:
                if fresh:
                    yield _join(text, tail, members), exact
                tail = self._tail(text, tokens, tail, members, min(overlap, size - unit.tokens - 1))
                members = []
                used = exact = sum(count for _, count in tail)
                unit = _Unit(unit.start, unit.end, unit.tokens, " ")
                fresh = False
            used += unit.tokens + (1 if used else 0)
            exact += unit.tokens
            members.append(unit)
            fresh = True
        if (tail or members) and fresh:
            yield _join(text, tail, members), exact

    @staticmethod
    def _tail(
        text: str, tokens: _Tokens, tail: list[tuple[str, int]], members: list[_Unit], budget: int
    ) -> list[tuple[str, int]]:
        """The chunk's last whole words, with their tokens, up to `budget` tokens in all."""
        if budget <= 0:
            return []
        words = (
            (match.group(), tokens.count(match.start(), match.end()))
            for unit in reversed(members)
            for match in reversed(list(_WORD.finditer(text, _tail_start(text, tokens, unit, budget), unit.end)))
        )
        kept: list[tuple[str, int]] = []
        used = 0
        for word, count in chain(words, reversed(tail)):
            if used + count > budget:
                break
            kept.append((word, count))
            used += count
        kept.reverse()
        return kept


def _tail_start(text: str, tokens: _Tokens, unit: _Unit, budget: int) -> int:
    """Where the words that can still fit in `budget` tokens begin within `unit`: the start of the
    word holding its last `budget + 1` tokens (so the overlap's search reads a few words, not all)."""
    last = tokens.index(unit.end)
    first = max(tokens.index(unit.start), last - budget - 1)
    if first >= last:
        return unit.start
    position = tokens.offsets[first][0]
    return max(unit.start, text.rfind(" ", unit.start, position) + 1, text.rfind("\n", unit.start, position) + 1)


def _join(text: str, tail: list[tuple[str, int]], members: list[_Unit]) -> str:
    parts = [" ".join(word for word, _ in tail)] if tail else []
    for unit in members:
        if parts:
            parts.append(unit.separator)
        parts.append(text[unit.start : unit.end])
    return "".join(parts)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _sentences(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """The spans of the sentences of text[start:end] (cut after . ! ? and whitespace)."""
    for match in _SENTENCE_END.finditer(text, start, end):
        yield start, match.start()
        start = match.end()
    if start < end:
        yield start, end


def _sections(text: str) -> Iterator[tuple[str | None, list[tuple[int, int]]]]:
    """(heading path, paragraph spans) per section; a heading line opens a section."""
    path: list[tuple[int, str]] = []
    paragraphs: list[tuple[int, int]] = []
    heading: str | None = None
    block_start = 0
    for block_end, next_start in [*((m.start(), m.end()) for m in _BLOCK_BREAK.finditer(text)), (len(text), len(text))]:
        start, end = _strip(text, block_start, block_end)
        block_start = next_start
        if start == end:
            continue
        line_start = start
        while line_start < end:
            line_end = text.find("\n", line_start, end)
            line_end = end if line_end == -1 else line_end
            if _HEADING.match(text, line_start, line_end):
                before = _strip(text, start, line_start)
                if before[0] < before[1]:
                    # Text above a heading with no blank line in between: the previous section's.
                    paragraphs.append(before)
                if paragraphs:
                    yield heading, paragraphs
                    paragraphs = []
                line = text[line_start:line_end]
                level = len(line) - len(line.lstrip("#"))
                path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, line.lstrip("#").strip())]
                heading = " > ".join(t for _, t in path)
                paragraphs.append(_strip(text, line_start, line_end))
                start = line_end
            line_start = line_end + 1
        rest = _strip(text, start, end)
        if rest[0] < rest[1]:
            # The block's text (or the body glued under its heading with no blank line in between).
            paragraphs.append(rest)
    if paragraphs:
        yield heading, paragraphs
