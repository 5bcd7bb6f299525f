"""Text out of each supported format: plain text, Markdown, HTML, PDF, JSON/JSONL, CSV."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath

log = logging.getLogger(__name__)


class Format(StrEnum):
    """The document formats ingestion reads."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"
    PDF = "pdf"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


class UnsupportedFormat(ValueError):
    """The document's format is not one this service reads (answered 415)."""


class DocumentTooLarge(ValueError):
    """The document is over the size limit (answered 413)."""


class UnreadableDocument(ValueError):
    """The document is of a known format but yields no text, or is corrupt (answered 422)."""


class ContentMismatch(UnsupportedFormat):
    """The bytes are not of the format the upload declares, e.g. a PNG sent as `notes.txt` (answered 415).

    `declared_type` is the media type of the declared format (`text/plain`), `detected_type` the
    one its bytes show (`image/png`, `application/octet-stream` when unknown).
    """

    def __init__(self, declared_type: str, detected_type: str) -> None:
        super().__init__(f"the document is declared {declared_type} but its content is {detected_type}")
        self.declared_type = declared_type
        self.detected_type = detected_type


_BY_SUFFIX = {
    ".txt": Format.TEXT,
    ".text": Format.TEXT,
    ".md": Format.MARKDOWN,
    ".markdown": Format.MARKDOWN,
    ".html": Format.HTML,
    ".htm": Format.HTML,
    ".pdf": Format.PDF,
    ".json": Format.JSON,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".csv": Format.CSV,
}
_BY_MEDIA_TYPE = {
    "text/plain": Format.TEXT,
    "text/markdown": Format.MARKDOWN,
    "text/x-markdown": Format.MARKDOWN,
    "text/html": Format.HTML,
    "application/xhtml+xml": Format.HTML,
    "application/pdf": Format.PDF,
    "application/json": Format.JSON,
    "application/jsonl": Format.JSONL,
    "application/x-ndjson": Format.JSONL,
    "application/jsonlines": Format.JSONL,
    "text/csv": Format.CSV,
}


# The media type each format is declared as when a mismatch is reported.
MEDIA_TYPES = {
    Format.TEXT: "text/plain",
    Format.MARKDOWN: "text/markdown",
    Format.HTML: "text/html",
    Format.PDF: "application/pdf",
    Format.JSON: "application/json",
    Format.JSONL: "application/jsonl",
    Format.CSV: "text/csv",
}
TEXT = "text/plain"
PDF = "application/pdf"
UNKNOWN = "application/octet-stream"
# C0 controls that never occur in text, whatever its 8-bit encoding (tab, LF, VT, FF, CR and ESC can).
_BINARY_CONTROLS = bytes(set(range(32)) - {9, 10, 11, 12, 13, 27})


def detect_content_type(data: bytes) -> str:
    """The media type the bytes themselves show: `application/pdf`, `text/plain`, or another type.

    Binary formats are told by their magic bytes (puremagic's signature data, the file(1)-style
    table it maintains); text formats have none, so text is judged honestly instead: NUL-free
    UTF-8 (or UTF-16 with its byte-order mark), or 8-bit text with no control character that text
    never holds and no signature. Markdown, HTML, JSON, JSONL and CSV are all `text/plain` here:
    their syntax is checked by their extractors. `application/octet-stream` when nothing fits.
    """
    import puremagic  # imported here: only byte uploads pay for its signature table

    try:
        matches = puremagic.magic_string(data)
    except (puremagic.PureError, ValueError):
        matches = []
    signature = matches[0].mime_type if matches else None
    # A PDF may be plain ASCII throughout: its signature decides before any text check.
    if signature == PDF:
        return PDF
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return TEXT if "\x00" not in data.decode("utf-16") else UNKNOWN
        except UnicodeDecodeError:
            return signature or UNKNOWN
    if b"\x00" not in data:
        try:
            data.decode("utf-8")
            return TEXT
        except UnicodeDecodeError:
            if signature is None and not any(byte in _BINARY_CONTROLS for byte in data[:65536]):
                return TEXT  # Latin-1 or another 8-bit text: extraction decodes it as Latin-1
    return signature or UNKNOWN


def check_content(data: bytes, fmt: Format) -> None:
    """Raise `ContentMismatch` unless the bytes are of `fmt`: a PDF for `pdf`, text for the rest."""
    detected = detect_content_type(data)
    expected = PDF if fmt is Format.PDF else TEXT
    if detected != expected:
        raise ContentMismatch(MEDIA_TYPES[fmt], detected)


def detect_format(declared: str | None, filename: str | None, media_type: str | None) -> Format:
    """The format the caller named, else the file name's suffix, else the media type."""
    if declared:
        try:
            return Format(declared.lower())
        except ValueError:
            raise UnsupportedFormat(f"unknown format {declared!r}; one of: {', '.join(Format)}") from None
    if filename:
        suffix = PurePath(filename).suffix.lower()
        if suffix in _BY_SUFFIX:
            return _BY_SUFFIX[suffix]
    base = (media_type or "").split(";")[0].strip().lower()
    if base in _BY_MEDIA_TYPE:
        return _BY_MEDIA_TYPE[base]
    # An upload with no useful name or type: text is the only honest guess, and only for text/*.
    if base.startswith("text/") or (not base and not filename):
        return Format.TEXT
    raise UnsupportedFormat(f"cannot tell the format of {filename or 'the upload'} ({base or 'no media type'})")


@dataclass(frozen=True)
class ExtractOptions:
    """Which parts of structured formats hold the text."""

    text_field: str = "text"
    columns: Sequence[str] = ()


@dataclass(frozen=True)
class Extracted:
    """A document's text, and its title when the format has one (markdown `# ` line, HTML <title>, PDF metadata)."""

    text: str
    title: str | None = None


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    # Latin-1 decodes any byte string; better a few odd characters than refusing a document.
    return data.decode("latin-1")


def extract(data: bytes, fmt: Format, options: ExtractOptions = ExtractOptions()) -> Extracted:
    """The document's text (not yet cleaned) and a title when the format carries one."""
    match fmt:
        case Format.TEXT:
            return Extracted(_decode(data))
        case Format.MARKDOWN:
            return _markdown(_decode(data))
        case Format.HTML:
            return _html(data)
        case Format.PDF:
            return _pdf(data)
        case Format.JSON:
            return _json(_decode(data), options.text_field)
        case Format.JSONL:
            return _jsonl(_decode(data), options.text_field)
        case Format.CSV:
            return _csv(_decode(data), options.columns)
    raise UnsupportedFormat(str(fmt))  # pragma: no cover - every Format is matched above


def _markdown(text: str) -> Extracted:
    # Markdown stays Markdown: its headings are what chunking breaks on first.
    title = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("# ")), None)
    return Extracted(text, title)


# Elements that are page furniture or code, not the document's content.
_HTML_DROP = ("script", "style", "noscript", "template", "iframe", "svg", "canvas", "form", "button", "input", "select")
_HTML_BOILERPLATE = ("nav", "header", "footer", "aside")
_HTML_BLOCKS = ("p", "div", "section", "article", "main", "li", "tr", "br", "pre", "blockquote", "table", "ul", "ol")


def _html(data: bytes) -> Extracted:
    from bs4 import BeautifulSoup  # imported here: only HTML documents pay for it

    soup = BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    for tag in soup(list(_HTML_BOILERPLATE)):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": ["navigation", "banner", "contentinfo", "complementary"]}):
        tag.decompose()
    if soup.head:
        soup.head.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    # Headings become Markdown headings and blocks become paragraphs, so chunking sees structure.
    for level in range(1, 7):
        for heading in root.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    for block in root.find_all(list(_HTML_BLOCKS)):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    text = root.get_text("")
    return Extracted(text, title or None)


def _pdf(data: bytes) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise UnreadableDocument("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except UnreadableDocument:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        # pypdf raises a spread of exceptions on damaged files; all mean the same to a caller.
        log.info("unreadable PDF: %s", error)
        raise UnreadableDocument("the PDF is corrupt or not a PDF") from error
    return Extracted("\n\n".join(pages), str(title) if title else None)


def _field(record: object, path: str) -> str | None:
    # `a.b` reads nested objects: many exports keep the text one level down.
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, str) else None


def _json(text: str, text_field: str) -> Extracted:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UnreadableDocument(f"not valid JSON (line {error.lineno})") from error
    records = document if isinstance(document, list) else [document]
    return _records(records, text_field)


def _jsonl(text: str, text_field: str) -> Extracted:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UnreadableDocument(f"line {number} is not valid JSON") from error
    return _records(records, text_field)


def _records(records: list[object], text_field: str) -> Extracted:
    texts = [value for record in records if (value := _field(record, text_field))]
    if not texts:
        raise UnreadableDocument(f"no record has a text field {text_field!r}")
    return Extracted("\n\n".join(texts))


def _csv(text: str, columns: Sequence[str]) -> Extracted:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    chosen = list(columns) or header
    missing = [column for column in chosen if column not in header]
    if missing or not chosen:
        raise UnreadableDocument(f"the CSV has no column(s) {', '.join(missing) or '(none at all)'}")
    rows = []
    for row in reader:
        values = [
            f"{column}: {row[column]}" if len(chosen) > 1 else row[column] for column in chosen if row.get(column)
        ]
        if values:
            rows.append("\n".join(values))
    return Extracted("\n\n".join(rows))
