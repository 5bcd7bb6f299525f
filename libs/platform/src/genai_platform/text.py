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
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_platform.errors import PROBLEM_JSON, invalid_request

# Pydantic's message for `string_unicode`, so an error reads the same whichever layer found it.
NOT_UNICODE = "Input should be a valid string, unable to parse raw data as a unicode string"
DETAIL = "The request holds a string that is not Unicode text (a lone surrogate or bytes that are not UTF-8)."
# A JSON escape of a UTF-16 surrogate (high or low): the only way a JSON text that is UTF-8 can
# hold one. Paired ones match too; parsing tells them apart.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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
    """Where a JSON body holds text that is not Unicode: a lone surrogate escape, or bytes that are
    not UTF-8 (read as surrogates, so they are found where they are). Empty for a body that is
    Unicode throughout, and for one that is not JSON at all (the route answers that itself)."""
    try:
        body.decode("utf-8")
        if not _SURROGATE_ESCAPE.search(body):
            return []
    except UnicodeDecodeError:
        pass
    try:
        parsed = json.loads(body.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return []
    return list(text_errors(parsed, ("body",)))


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
    try:
        from python_multipart.multipart import MultipartParser, parse_options_header
    except ImportError:  # an app that takes no forms; Starlette cannot parse one either
        return []
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        return []
    parts: list[dict[str, Any]] = []
    header: list[bytes] = []

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[:] = [data[start:end].lower(), b""]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header[0]] = header[1]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    callbacks = {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data,
    }  # fmt: skip
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except Exception:  # noqa: BLE001 - any parse failure is the route's to answer
        return []
    errors: list[tuple[str | int, ...]] = []
    for part in parts:
        options = parse_options_header(part["headers"].get(b"content-disposition", b""))[1]
        name = options.get(b"name", b"")
        shown = name.decode("utf-8", "replace")
        if not _is_utf8(name):
            errors.append(("body", shown))
        elif b"filename" in options:
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


class UnicodeTextMiddleware:
    """ASGI middleware answering a 422 naming each place a request holds text that is not Unicode
    (its path, query string, JSON body or form) before any route reads it; other requests pass as sent.

    A JSON or form body is read whole (routes read it whole anyway) and handed on as it was; after
    it, the route's `receive` is the server's, so a disconnect still reaches a streaming answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call, refusing text that is not Unicode (HTTP only)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = [*path_errors(scope), *query_errors(scope.get("query_string", b""))]
        content_type, media_type = _media_type(scope)
        if _is_json(media_type) or media_type in _FORMS:
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client left mid-body
                    await self.app(scope, _replay([message], receive), send)
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            errors += json_body_errors(body) if _is_json(media_type) else form_errors(content_type, body)
            receive = _replay([{"type": "http.request", "body": body, "more_body": False}], receive)
        if errors:
            found = [{"location": ".".join(_shown(part) for part in where), "message": NOT_UNICODE} for where in errors]
            problem = invalid_request(found, DETAIL)
            body = problem.body(scope.get("path"))
            response = JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
