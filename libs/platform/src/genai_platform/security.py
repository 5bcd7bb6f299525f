"""The app API token check: only this app's own sidecar may call the routes it serves."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from genai_platform.errors import Problem, problem_response

# Probes (kubelet, the CLI) and Prometheus scrapes come without the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
TOKEN_HEADER = "dapr-api-token"
# The API docs (genai_platform.api_docs) and the OpenAPI document: open only where an app names them
# among its open prefixes (the gateway, whose API is public). An app open to browsers at `/` (the
# ui) keeps them to its sidecar: its JSON routes serve its own pages, not the public.
API_DOCS_PREFIXES = ("/docs", "/openapi.json")


def tokens_match(given: str | None, expected: str) -> bool:
    """Compare in constant time, so response timing tells nothing about the token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class AppTokenMiddleware:
    """Refuses requests without the `APP_API_TOKEN` daprd sends as `dapr-api-token`.

    dapr-ext-fastapi does not check this token, so every service gets it here. Paths in
    `open_paths` (probes, and a gateway's public API, which has API keys instead) pass.
    """

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str], open_prefixes: tuple[str, ...]):
        self.app = app
        self.token = token
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass an open path or a request with the right token on; answer anything else 401 problem+json."""
        if scope["type"] != "http" or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = next((value.decode() for name, value in scope["headers"] if name == TOKEN_HEADER.encode()), None)
        if tokens_match(given, self.token):
            await self.app(scope, receive, send)
            return
        response = problem_response(Problem(401, "This route is served to the app's Dapr sidecar only."))
        await response(scope, receive, send)

    def _is_open(self, path: str) -> bool:
        if path in self.open_paths:
            return True
        if path.startswith(API_DOCS_PREFIXES):
            named = (prefix for prefix in self.open_prefixes if prefix.startswith(API_DOCS_PREFIXES))
            return any(path.startswith(prefix) for prefix in named)
        return path.startswith(self.open_prefixes)
