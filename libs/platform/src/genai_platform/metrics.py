"""Prometheus metrics every service exposes on /metrics, and one access log line per request."""

from __future__ import annotations

import logging
import time

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Probes and scrapes come every few seconds from daprd and Prometheus: counted, never logged.
_UNLOGGED = frozenset({"/healthz", "/readyz", "/metrics"})
access = logging.getLogger("genai_platform.access")

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests served, by route template and status.",
    ["app_id", "method", "route", "status"],
)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to the end of the response, by route template.",
    ["app_id", "method", "route"],
)


def _route_template(scope: Scope) -> str:
    # Label by template (/v1/documents/{id}), never by raw path: ids would explode cardinality.
    # The router leaves the route it matched in the scope; matching again after the request has
    # gone through it finds nothing (every request was labelled "unmatched").
    matched = scope.get("route")
    if matched is not None:
        return getattr(matched, "path", "unmatched")
    app = scope.get("app")
    for route in getattr(getattr(app, "router", None), "routes", []):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class RequestMetricsMiddleware:
    """ASGI middleware counting requests (per app, method, route, status) and timing them (seconds).

    The route is the router's template (`/v1/documents/{document_id}`), never the raw path, so
    ids cannot blow up the label set; /metrics itself is not counted.
    """

    def __init__(self, app: ASGIApp, app_id: str) -> None:
        self.app = app
        self.app_id = app_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call, counting and timing it when it is an HTTP request."""
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            elapsed = time.perf_counter() - started
            REQUESTS.labels(self.app_id, scope["method"], route, str(status)).inc()
            LATENCY.labels(self.app_id, scope["method"], route).observe(elapsed)
            if scope["path"] not in _UNLOGGED:
                # Written inside the request's span and request id, so the log store finds every
                # app a traced request crossed (the monitor's GET /v1/traces/{id}).
                access.info(
                    "request served",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 1),
                    },
                )


def metrics_response() -> Response:
    """This process's metrics in Prometheus' text exposition format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
