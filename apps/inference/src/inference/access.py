"""Who may call the OpenAI routes: our sidecar (app token) or a holder of the inference API key.

The routes sit under an open prefix of the app-token middleware because Dapr's
conversation.openai component calls them as a plain OpenAI client: it sends
`Authorization: Bearer <key>` and never our app token. The key lives in the secret store and
is read through the sidecar, so rotating it needs no restart.
"""

from __future__ import annotations

import logging
import time

import httpx
from fastapi import Request

from genai_platform.contracts.openai import error_object
from genai_platform.dapr import DaprError, Sidecar
from genai_platform.errors import Problem
from genai_platform.security import TOKEN_HEADER, tokens_match

log = logging.getLogger(__name__)


class ApiKey:
    """The inference API key from the secret store, cached for `ttl` seconds."""

    def __init__(self, sidecar: Sidecar, secret_name: str, ttl: float = 60.0, retry_after: float = 5.0) -> None:
        self.sidecar = sidecar
        self.secret_name = secret_name
        self.ttl = ttl
        self.retry_after = retry_after
        self._value: str | None = None
        self._expires = 0.0

    async def get(self) -> str | None:
        """The key, from the cache or the secret store; None when there is none (or the store cannot
        be read: then asked again after `retry_after` seconds), so only the sidecar may call."""
        now = time.monotonic()
        if now < self._expires:
            return self._value
        try:
            secret = await self.sidecar.get_secret(self.secret_name)
            self._value = secret.get(self.secret_name) or next(iter(secret.values()), None)
            self._expires = now + self.ttl
        except (DaprError, httpx.HTTPError) as error:
            # No key, no secret store, or the sidecar not up yet: only the sidecar may call
            # for now; ask again soon.
            log.warning("inference API key unavailable", extra={"secret": self.secret_name, "error": str(error)})
            self._value, self._expires = None, now + self.retry_after
        return self._value


async def require_caller(request: Request) -> None:
    """Pass our sidecar (app token) or a bearer of the inference API key; refuse anyone else."""
    settings = request.app.state.settings
    if settings.app_api_token is None:  # development without tokens: the middleware is off too
        return
    if tokens_match(request.headers.get(TOKEN_HEADER), settings.app_api_token.get_secret_value()):
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given:
        key = await request.app.state.api_key.get()
        if key is not None and tokens_match(given.strip(), key):
            return
    raise Problem(
        401,
        "Call through the Dapr sidecar, or present the inference API key as a bearer token.",
        headers={"WWW-Authenticate": "Bearer"},
        error=error_object("Invalid or missing API key.", code="invalid_api_key"),
    )
