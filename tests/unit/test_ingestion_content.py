"""The real type of an upload, told from its bytes (puremagic for binary formats, an honest text test)."""

import pytest

from ingestion.extract import ContentMismatch, Format, check_content, detect_content_type

# The first bytes of a real 2x2 greyscale PNG (signature and IHDR chunk, CRC included): what a
# sniffer reads. The integration tests upload a whole one (knowledge_docs.png).
PNG = bytes.fromhex("89504e470d0a1a0a0000000d494844520000000200000002080000000057dd52f8")


TEXTS = {
    Format.TEXT: "Plain text, accentué, ünïcödé ✓\n".encode(),
    Format.MARKDOWN: b"# Title\n\nSome *markdown*.\n",
    Format.HTML: b"<!DOCTYPE html><html><head><title>t</title></head><body><p>x</p></body></html>",
    Format.JSON: b'{"text": "a record"}',
    Format.JSONL: b'{"text": "one"}\n{"text": "two"}\n',
    Format.CSV: b"question,answer\nwhy,because\n",
}


@pytest.mark.parametrize("fmt", list(TEXTS))
def test_every_text_format_is_text_and_passes(fmt: Format) -> None:
    assert detect_content_type(TEXTS[fmt]) == "text/plain"
    check_content(TEXTS[fmt], fmt)  # raises on a mismatch


def test_a_pdf_is_a_pdf_even_when_its_bytes_are_ascii() -> None:
    data = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    assert detect_content_type(data) == "application/pdf"
    check_content(data, Format.PDF)


def test_text_in_other_encodings_is_still_text() -> None:
    assert detect_content_type("Grüße aus Köln".encode("utf-16")) == "text/plain"  # with its byte-order mark
    assert detect_content_type("café crème".encode("latin-1")) == "text/plain"  # not UTF-8, no signature
    assert detect_content_type(b"") == "text/plain"


def test_a_png_named_as_text_is_refused_naming_both_types() -> None:
    data = PNG
    assert detect_content_type(data) == "image/png"
    with pytest.raises(ContentMismatch) as refused:
        check_content(data, Format.TEXT)
    assert (refused.value.declared_type, refused.value.detected_type) == ("text/plain", "image/png")
    assert "text/plain" in str(refused.value) and "image/png" in str(refused.value)


@pytest.mark.parametrize(
    ("data", "fmt", "detected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01", Format.MARKDOWN, "image/jpeg"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", Format.CSV, "application/x-gzip"),
        (b"text with a NUL\x00 in it", Format.JSON, "application/octet-stream"),
        (b"\x01\x02\x03\x04\x05\x06\xfe", Format.TEXT, "application/octet-stream"),
        (TEXTS[Format.TEXT], Format.PDF, "text/plain"),
    ],
)
def test_other_binary_content_never_passes_as_the_declared_format(data: bytes, fmt: Format, detected: str) -> None:
    with pytest.raises(ContentMismatch) as refused:
        check_content(data, fmt)
    assert refused.value.detected_type == detected
