"""Relay a public request to the app that serves it, through Dapr service invocation.

The response streams back as the app sends it (server-sent events included), and the model
tokens it reports in `usage` are counted against the caller's quota. A problem+json answer is the
one thing changed on the way: its `instance` becomes the path the caller used (`for_caller`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from genai_platform.dapr import Sidecar
from genai_platform.errors import PROBLEM_JSON, Problem, invalid_request
from genai_platform.requests import current_request_id

# What a caller may say about the body and what it accepts; the rest (its API key above all)
# stays at the gateway. The request id goes on as the gateway took it (`current_request_id`: the
# caller's when it is plain, else a fresh one), the trace context by the client's instrumentation.
FORWARDED_REQUEST_HEADERS = ("content-type", "accept")
RELAYED_RESPONSE_HEADERS = ("content-type", "cache-control", "retry-after")


def _unreachable(app_id: str) -> Problem:
    return Problem(503, f"The {app_id} service cannot be reached right now.", headers={"Retry-After": "5"})


async def _is_dapr_error(response: httpx.Response) -> bool:
    """True when the sidecar, not the app, produced this error (Dapr's `errorCode` body)."""
    if "problem+json" in response.headers.get("content-type", ""):
        return False
    try:
        body = json.loads(await response.aread())
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("errorCode", "")).startswith("ERR_")


# A problem+json body is a few hundred bytes; one declared larger than this is relayed as it is.
MAX_PROBLEM_BYTES = 64 << 10


def for_caller(problem: bytes, path: str) -> bytes:
    """A problem+json body from an app, its `instance` set to `path`, the path the caller used.

    RFC 9457 section 3.1.5: `instance` identifies this occurrence for the client, who never sees
    an app's own path (the registry's `/v1/models/...` behind the public `/v1/registry/models/...`).
    One rule for every relayed app, as for the problems the gateway answers itself (the chat
    pipeline drops a stage's `instance`, gateway.stages). A body that is not a JSON object is
    returned unchanged.
    """
    try:
        body = json.loads(problem)
    except ValueError:
        return problem
    if not isinstance(body, dict):
        return problem
    body["instance"] = path
    return json.dumps(body).encode()


def forwarded_headers(request: Request) -> dict[str, str]:
    """The caller's headers that go on to the app (`FORWARDED_REQUEST_HEADERS`) and the request id.

    Raises a 422 naming a forwarded header whose value is not ASCII (RFC 9110 section 5.5: other
    bytes are obsolete): the HTTP client refuses to send one, and a new-user trial found
    `Accept: caf\xe9` a 500 on every relayed route.
    """
    headers, errors = {}, []
    for name in FORWARDED_REQUEST_HEADERS:
        value = request.headers.get(name)
        if value and not value.isascii():
            errors.append({"location": f"header.{name}", "message": "A header value must be ASCII text."})
        elif value:
            headers[name] = value
    if errors:
        raise invalid_request(errors)
    if request_id := current_request_id.get():
        headers["x-request-id"] = request_id
    return headers


class UsageMeter:
    """Finds the `usage.total_tokens` an OpenAI-shaped answer reports, streamed or not."""

    def __init__(self) -> None:
        self._tail = b""
        self._whole = bytearray()
        self.total_tokens = 0

    def feed(self, chunk: bytes) -> None:
        """Read the next piece of the answer's body as it is relayed."""
        if len(self._whole) < 1 << 20:  # a JSON answer is small; SSE is read line by line
            self._whole += chunk
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                self._take(line[5:].strip())

    def close(self) -> None:
        """The body is over: read a whole JSON answer (not an event stream) for its usage."""
        if self.total_tokens == 0 and not self._whole.lstrip().startswith(b"data:"):
            self._take(bytes(self._whole))

    def _take(self, payload: bytes) -> None:
        try:
            usage = json.loads(payload).get("usage") or {}
        except (ValueError, AttributeError):
            return
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            self.total_tokens = usage["total_tokens"]


async def forward(
    request: Request,
    sidecar: Sidecar,
    app_id: str,
    path: str,
    *,
    timeout: float,
    on_usage: Callable[[int], Awaitable[None]] | None = None,
) -> Response:
    """Send this request's method, query and body to `app_id` at `path` and stream the answer back;
    a problem+json answer comes back whole, its `instance` the caller's path (`for_caller`)."""
    query = request.url.query
    headers = forwarded_headers(request)
    stack = AsyncExitStack()
    try:
        upstream = await stack.enter_async_context(
            sidecar.invoke_stream(
                app_id,
                f"{path}?{query}" if query else path,
                method=request.method,
                content=await request.body(),
                headers=headers,
                timeout=timeout,
            )
        )
    except httpx.HTTPError as error:
        await stack.aclose()
        raise _unreachable(app_id) from error

    if upstream.status_code >= 500 and await _is_dapr_error(upstream):
        await stack.aclose()
        # daprd could not deliver (no such app, app down, timeout): say so without its internals.
        raise _unreachable(app_id)

    relayed = {name: value for name in RELAYED_RESPONSE_HEADERS if (value := upstream.headers.get(name))}
    length = upstream.headers.get("content-length", "")
    if (
        upstream.status_code >= 400
        and PROBLEM_JSON in upstream.headers.get("content-type", "")
        and not (length.isdigit() and int(length) > MAX_PROBLEM_BYTES)
    ):
        try:
            body = await upstream.aread()
        finally:
            await stack.aclose()
        return Response(for_caller(body, request.url.path), status_code=upstream.status_code, headers=relayed)

    meter = UsageMeter()

    async def relay() -> AsyncIterator[bytes]:
        async for chunk in upstream.aiter_raw():
            meter.feed(chunk)
            yield chunk
        meter.close()
        if on_usage is not None and meter.total_tokens:
            await on_usage(meter.total_tokens)

    return StreamingResponse(
        relay(), status_code=upstream.status_code, headers=relayed, background=BackgroundTask(stack.aclose)
    )
