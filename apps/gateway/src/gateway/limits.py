"""Per-key request rate limits; the size limits of every request.

Rate buckets live in this gateway replica's memory: a limit of N per minute across R replicas
admits up to N*R. That trade keeps a store round-trip off the rate check. Token quotas and
request counts, which must hold across replicas and restarts, are in the state store
(gateway.usage).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_platform.errors import PROBLEM_JSON, Problem, body_too_large


@dataclass
class TokenBucket:
    """`capacity` requests at once, refilled at `capacity` per `period` seconds."""

    capacity: float
    period: float
    tokens: float = field(init=False)
    updated: float = field(init=False)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.tokens = self.capacity
        self.updated = self.clock()

    def take(self) -> float:
        """Take one request; 0.0 when allowed, else the seconds until one is."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.capacity / self.period)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * self.period / self.capacity


class Limits:
    """The request rate limit of every API key seen by this replica."""

    def __init__(self, requests_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.requests_per_minute = requests_per_minute
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def admit(self, key: str) -> None:
        """Raise 429 with Retry-After when this key is over its request rate."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.requests_per_minute, 60.0, clock=self._clock)
        wait = bucket.take()
        if wait > 0:
            raise _too_many(wait, f"Over the limit of {self.requests_per_minute} requests per minute for this key.")


def _too_many(wait: float, detail: str) -> Problem:
    return Problem(429, detail, headers={"Retry-After": str(max(1, math.ceil(wait)))})


# --- body and header sizes -------------------------------------------------------------------

# Routes whose body goes to a model (a conversation, a prompt, texts to embed).
MODEL_ROUTES = frozenset({("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings")})
# Routes that take a file: a document to ingest, a file of training examples.
UPLOAD_ROUTES = frozenset({("POST", "/v1/documents"), ("POST", "/v1/files")})


@dataclass(frozen=True)
class SizeLimits:
    """The largest request the gateway lets through, in bytes: the body per route class and the header block.

    Each is a gateway setting (GatewaySettings: `max_model_body_bytes`, `max_upload_body_bytes`,
    `max_body_bytes`, `max_header_bytes`); the sidecars' own limit (daprd `--max-body-size`,
    `maxBodySize` in dapr.yaml) must be at least the largest, so a body the gateway admits
    is never refused further on with an error the client cannot act on.
    """

    model_body: int
    upload_body: int
    body: int
    header: int

    def body_limit(self, method: str, path: str) -> tuple[int, str]:
        """The body limit of a request and the name of its route class (model, upload, other)."""
        route = (method, path.rstrip("/") or "/")
        if route in MODEL_ROUTES:
            return self.model_body, "model requests"
        if route in UPLOAD_ROUTES:
            return self.upload_body, "uploads"
        return self.body, "this route"


class BodyTooLarge(Exception):
    """A request body went over its limit while it was being read (a chunked body has no length)."""


def headers_too_large(size: int, limit: int) -> Problem:
    """The 431 for a header block of `size` bytes over `limit` (RFC 6585 5), naming the limit."""
    return Problem(
        431,
        f"The request's header fields are {size} bytes, more than the limit of {limit} bytes.",
        limit_bytes=limit,
    )


def header_block_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of the header fields as sent: `name: value` and CRLF per field."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


class SizeLimitMiddleware:
    """ASGI middleware refusing a request whose headers or body are over the gateway's limits.

    A declared `Content-Length` over the limit is refused before the body is read; a body without
    one (chunked) is counted as it is read, and refused as soon as it passes the limit. Either way
    the answer is problem+json (413 or 431) and nothing reaches a sidecar.
    """

    def __init__(self, app: ASGIApp, limits: SizeLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call within the limits (HTTP only)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = header_block_size(scope["headers"])
        if size > self.limits.header:
            await _answer(headers_too_large(size, self.limits.header), scope, send)
            return
        limit, route_class = self.limits.body_limit(scope["method"], scope["path"])
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(body_too_large(limit, route_class), scope, send)
            return

        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if over:  # the app answered the failed read its own way: the 413 says what happened
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not over:
                raise
        if over and not started:
            await _answer(body_too_large(limit, route_class), scope, send)


async def _answer(problem: Problem, scope: Scope, send: Send) -> None:
    response = JSONResponse(
        problem.body(scope.get("path")),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        # The body may be left unread: the connection is not reused for the next request.
        headers={"Connection": "close"},
    )
    await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
