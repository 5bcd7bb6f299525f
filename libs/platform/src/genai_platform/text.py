"""Unicode text: the platform's one rule for what a string a client sends must be.

JSON can carry a lone UTF-16 surrogate (`"\\ud800"` is valid JSON but no Unicode text, RFC 8259
section 8.2), and a URL or a body can carry bytes that are not UTF-8 (`%FF`, or `%ED%A0%80`, a
surrogate in CESU-8). Python reads the first into a `str` that cannot be encoded again, so it
failed wherever the text went next (a tokenizer, a state save, a Dapr call, a log line) as a 500.
Pydantic refuses one (`string_unicode`) only for a string with a length limit, so a rule per field
kept missing fields; and no field type sees a URL's bytes (Starlette turns them into U+FFFD).

So every service refuses such input once, at its edge (`UnicodeTextMiddleware`, installed by
`genai_platform.service.create_service`): a 422 in the platform's one shape, each error naming
where the text is (`body.tags.0`, `query.collection`, `path.document_id`) with pydantic's own
`string_unicode` message. Valid text is never touched.

To see a body before its route does, the rule holds it, so it also bounds it: a body over the app's
limit (`MAX_BODY_BYTES` unless the app sets its own) is a 413 naming `limit_bytes`, as the gateway's
size limits answer; a multipart body past `SPOOL_BYTES` is held on disk, as Starlette holds a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from tempfile import SpooledTemporaryFile
from typing import Any
from urllib.parse import unquote_to_bytes

import anyio.to_thread
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_platform.errors import PROBLEM_JSON, Problem, body_too_large, invalid_request

# Pydantic's message for `string_unicode`, so an error reads the same whichever layer found it.
NOT_UNICODE = "Input should be a valid string, unable to parse raw data as a unicode string"
DETAIL = "The request holds a string that is not Unicode text (a lone surrogate or bytes that are not UTF-8)."
# A JSON escape of a UTF-16 surrogate (high or low): the only way a JSON text that is UTF-8 can
# hold one. Paired ones match too; parsing tells them apart.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# The largest body an app takes, in bytes, unless it sets its own: daprd's max body size (dapr.yaml
# `maxBodySize`, the clusters' `dapr.io/max-body-size`), since nothing larger reaches an app through
# its sidecar; the gateway's own limits (GatewaySettings, at most this) answer before the rule reads.
MAX_BODY_BYTES = 16 << 20
# A multipart body past this many bytes is held on disk while the rule reads it (Starlette's own
# threshold for an uploaded file), so a file costs the app no more memory than before the rule.
SPOOL_BYTES = 1 << 20
# A held multipart body goes on to the route in parts of this size.
_REPLAY_CHUNK = 64 << 10


def is_unicode_text(value: str) -> bool:
    """Whether `value` is Unicode text: it holds no lone surrogate, so it encodes as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(part: str | int) -> str:
    # A location names a key as given, its surrogates escaped: the answer itself must be UTF-8.
    return str(part).encode("utf-8", "backslashreplace").decode("utf-8")


def text_errors(node: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The location of every string in a parsed JSON value (object keys included) that is not
    Unicode text; `where` prefixes each (`("body",)`)."""
    if isinstance(node, str):
        if not is_unicode_text(node):
            yield where
    elif isinstance(node, dict):
        for key, value in node.items():
            here = (*where, _shown(key))
            if not is_unicode_text(key):
                yield here
            yield from text_errors(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from text_errors(value, (*where, index))


def json_body_errors(body: bytes) -> list[tuple[str | int, ...]]:
    """Where a JSON body holds text that is not Unicode: a lone surrogate (escaped, or a code unit of
    UTF-16 or UTF-32), or bytes that are not UTF-8 (read as surrogates, so they are found where they
    are). Empty for a body that is Unicode throughout, and for one that is not JSON at all (the route
    answers that itself).

    The body is read as the route reads it. Starlette's `request.json()` (FastAPI's body parsing, the
    gateway's `json_body`) is `json.loads(bytes)`, which takes UTF-16 and UTF-32 (detected from the
    zero bytes, RFC 4627's rule) and a UTF-8 byte order mark. Refusing those outright (RFC 8259 8.1
    asks for UTF-8) would be a second rule beside the routes' own, and would still have to know
    which bodies they take; reading each as they do leaves one answer per body: Unicode text passes
    in any encoding the route takes, and text that is not is located in every one.
    """
    encoding = json.detect_encoding(body)
    utf8 = encoding in ("utf-8", "utf-8-sig")
    if utf8:
        try:
            body.decode("utf-8")
            if not _SURROGATE_ESCAPE.search(body):
                return []
        except UnicodeDecodeError:
            pass
    try:
        # UTF-8's invalid bytes become escapes to be located (json.loads would refuse them: the route's
        # 422); UTF-16's and UTF-32's lone surrogate code units become the lone surrogates it reads.
        text = body.decode(encoding, "surrogateescape" if utf8 else "surrogatepass")
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError: the route refuses it
        return []
    return list(text_errors(parsed, ("body",)))


def unicode_problem(found: list[tuple[str | int, ...]]) -> Problem:
    """The 422 naming each place in `found` (`("body", "tags", 0)`) that holds text that is not Unicode."""
    errors = [{"location": ".".join(_shown(part) for part in where), "message": NOT_UNICODE} for where in found]
    return invalid_request(errors, DETAIL)


def _is_utf8(raw: bytes) -> bool:
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def query_errors(query_string: bytes) -> list[tuple[str | int, ...]]:
    """Where a query string holds a name or value whose percent-encoded bytes are not UTF-8."""
    errors: list[tuple[str | int, ...]] = []
    for pair in query_string.replace(b"+", b" ").split(b"&"):
        name, _, value = pair.partition(b"=")
        if not (_is_utf8(name) and _is_utf8(value)):
            shown = unquote_to_bytes(name).decode("utf-8", "replace")
            errors.append(("query", shown))
    return errors


def path_errors(scope: Scope) -> list[tuple[str | int, ...]]:
    """Where the request's path holds a segment whose percent-encoded bytes are not UTF-8: the path
    parameter the app's OpenAPI document names there (`path.document_id`), else `path`."""
    segments = scope.get("raw_path", b"").split(b"/")
    bad = [index for index, segment in enumerate(segments) if not _is_utf8(segment)]
    if not bad:
        return []
    names = _parameter_names(scope.get("app"), [unquote_to_bytes(s).decode("utf-8", "replace") for s in segments])
    return [("path", names[index]) if index in names else ("path",) for index in bad]


def _parameter_names(app: Any, segments: list[str]) -> dict[int, str]:
    # The document's templates, not the router's internals: the one public map of paths to names.
    openapi = getattr(app, "openapi", None)
    for template in (openapi() if callable(openapi) else {}).get("paths", {}):
        parts = template.split("/")
        if len(parts) == len(segments) and all(
            p == s or (p.startswith("{") and p.endswith("}")) for p, s in zip(parts, segments, strict=True)
        ):
            return {i: p[1:-1] for i, p in enumerate(parts) if p.startswith("{") and p.endswith("}")}
    return {}


def form_errors(content_type: bytes, body: bytes) -> list[tuple[str | int, ...]]:
    """Where a form holds a field name, a text field's value or a file name whose bytes are not
    UTF-8 (Starlette reads them as Latin-1 or U+FFFD: another text, silently). A file's content is
    the route's to judge. Empty for a form that cannot be parsed (the route answers that itself)."""
    media_type = content_type.split(b";")[0].strip().lower()
    if media_type == b"application/x-www-form-urlencoded":
        return [("body", *where[1:]) for where in query_errors(body)]
    if media_type != b"multipart/form-data":
        return []
    reader = MultipartReader(content_type)
    reader.write(body)
    return reader.errors()


class MultipartReader:
    """A multipart form read as it arrives (`write` each part of the body, then `errors`), keeping the
    headers of each part and the data of its text fields only: a file's content is never held."""

    def __init__(self, content_type: bytes) -> None:
        self._parts: list[dict[str, Any]] = []
        self._header: list[bytes] = []
        self._parser: Any = None
        self._failed = False
        try:
            from python_multipart.multipart import MultipartParser, parse_options_header
        except ImportError:  # an app that takes no forms; Starlette cannot parse one either
            return
        self._options = parse_options_header
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            return
        callbacks = {
            "on_part_begin": self._on_part_begin, "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value, "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished, "on_part_data": self._on_part_data,
        }  # fmt: skip
        self._parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]

    def _on_part_begin(self) -> None:
        self._parts.append({"headers": {}, "data": bytearray(), "file": False})

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header[:] = [data[start:end].lower(), b""]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header[1] += data[start:end]

    def _on_header_end(self) -> None:
        self._parts[-1]["headers"][self._header[0]] = self._header[1]

    def _on_headers_finished(self) -> None:
        part = self._parts[-1]
        part["options"] = self._options(part["headers"].get(b"content-disposition", b""))[1]
        part["file"] = b"filename" in part["options"]

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._parts[-1]["file"]:
            self._parts[-1]["data"] += data[start:end]

    def write(self, chunk: bytes) -> None:
        """Read the next bytes of the body."""
        if self._parser is None or self._failed:
            return
        try:
            self._parser.write(chunk)
        except Exception:  # noqa: BLE001 - any parse failure is the route's to answer
            self._failed = True

    def errors(self) -> list[tuple[str | int, ...]]:
        """The form's text that is not UTF-8, once the whole body is written; empty for a form that
        cannot be parsed."""
        if self._parser is None or self._failed:
            return []
        try:
            self._parser.finalize()
        except Exception:  # noqa: BLE001 - any parse failure is the route's to answer
            return []
        errors: list[tuple[str | int, ...]] = []
        for part in self._parts:
            options = part.get("options", {})
            name = options.get(b"name", b"")
            shown = name.decode("utf-8", "replace")
            if not _is_utf8(name):
                errors.append(("body", shown))
            elif part["file"]:
                if not _is_utf8(options[b"filename"]):
                    errors.append(("body", shown, "filename"))
            elif not _is_utf8(bytes(part["data"])):
                errors.append(("body", shown))
        return errors


def _media_type(scope: Scope) -> tuple[bytes, bytes]:
    content_type = next((value for name, value in scope["headers"] if name == b"content-type"), b"")
    return content_type, content_type.split(b";")[0].strip().lower()


def _is_json(media_type: bytes) -> bool:
    return media_type == b"application/json" or media_type.endswith(b"+json")


_FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class _ClientLeft(Exception):  # noqa: N818 - a condition, not an error
    def __init__(self, message: Message) -> None:
        self.message = message


class _TooLarge(Exception):  # noqa: N818 - a condition, not an error
    pass


class _HeldBody:
    """A request body as read, held for the route: in memory, or (a multipart body past
    `SPOOL_BYTES`) on disk."""

    def __init__(self, spooled: bool) -> None:
        self.size = 0
        self._chunks: list[bytes] = []
        self._file: Any = SpooledTemporaryFile(max_size=SPOOL_BYTES) if spooled else None  # noqa: SIM115 - closed by close()

    async def add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None:
            self._chunks.append(chunk)
        elif self.size > SPOOL_BYTES:  # on disk: written off the event loop, as Starlette writes a file
            await anyio.to_thread.run_sync(self._write_on_disk, chunk)
        else:
            self._file.write(chunk)

    def _write_on_disk(self, chunk: bytes) -> None:
        self._file.rollover()  # first, so a large part is never copied into memory on its way to disk
        self._file.write(chunk)

    def whole(self) -> bytes:
        return b"".join(self._chunks)

    def receive(self, then: Receive) -> Receive:
        """The body as the route receives it, part by part; after it, `then` (the server's)."""
        if self._file is None:
            return _replay([{"type": "http.request", "body": self.whole(), "more_body": False}], then)
        self._file.seek(0)
        left = self.size

        async def replayed() -> Message:
            nonlocal left
            if left < 0:
                return await then()
            chunk = await anyio.to_thread.run_sync(self._file.read, _REPLAY_CHUNK)
            left -= len(chunk)
            more = left > 0
            left = left if more else -1
            return {"type": "http.request", "body": chunk, "more_body": more}

        return replayed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class UnicodeTextMiddleware:
    """ASGI middleware answering a 422 naming each place a request holds text that is not Unicode
    (its path, query string, JSON body or form) before any route reads it; other requests pass as sent.

    A JSON or form body is read whole (routes read it whole anyway) and handed on as it was; after
    it, the route's `receive` is the server's, so a disconnect still reaches a streaming answer. A
    body over `limit_bytes` is a 413 naming the limit: refused by its declared length before it is
    read, else as soon as the bytes read pass it. A JSON or urlencoded body is held in memory, so it
    is never held past `MAX_BODY_BYTES` whatever the app's limit; a multipart body past
    `SPOOL_BYTES` is held on disk, and only its text fields' data is kept to be read.
    """

    def __init__(self, app: ASGIApp, limit_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call, refusing text that is not Unicode (HTTP only)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = [*path_errors(scope), *query_errors(scope.get("query_string", b""))]
        content_type, media_type = _media_type(scope)
        if not (_is_json(media_type) or media_type in _FORMS):
            if errors:
                await _answer(unicode_problem(errors), scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        multipart = media_type == b"multipart/form-data"
        limit = self.limit_bytes if multipart else min(self.limit_bytes, MAX_BODY_BYTES)
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > limit:
            await _answer(body_too_large(limit, "this service"), scope, _no_body, send)
            return
        held = _HeldBody(spooled=multipart)
        try:
            reader = MultipartReader(content_type) if multipart else None
            try:
                await _read(receive, held, limit, reader)
            except _ClientLeft as left:
                await self.app(scope, _replay([left.message], receive), send)
                return
            except _TooLarge:
                await _answer(body_too_large(limit, "this service"), scope, _no_body, send)
                return
            if reader is not None:
                errors += reader.errors()
            elif _is_json(media_type):
                errors += json_body_errors(held.whole())
            else:
                errors += form_errors(content_type, held.whole())
            if errors:
                await _answer(unicode_problem(errors), scope, receive, send)
                return
            await self.app(scope, held.receive(receive), send)
        finally:
            held.close()


async def _read(receive: Receive, held: _HeldBody, limit: int, reader: MultipartReader | None) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left mid-body
            raise _ClientLeft(message)
        chunk = message.get("body", b"")
        if held.size + len(chunk) > limit:
            raise _TooLarge
        await held.add(chunk)
        if reader is not None:
            reader.write(chunk)
        if not message.get("more_body", False):
            return


async def _answer(problem: Problem, scope: Scope, receive: Receive, send: Send) -> None:
    # No `Connection: close` for a body left unread (a 413): the server reads and drops the rest,
    # so the sender gets the answer. Closed at once, daprd relaying a 12 MiB upload to ingestion
    # failed writing it and answered its own 500 (ERR_DIRECT_INVOKE) instead of the app's 413.
    response = JSONResponse(problem.body(scope.get("path")), status_code=problem.status, media_type=PROBLEM_JSON)
    await response(scope, receive, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
