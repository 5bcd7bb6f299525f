"""API keys: held in the Dapr secret store, checked in constant time on every public route."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from genai_platform.dapr import DaprError, Sidecar
from genai_platform.errors import Problem
from genai_platform.security import tokens_match


class ApiKeys:
    """The set of valid keys, fetched from the secret store and refreshed after a TTL."""

    def __init__(self, sidecar: Sidecar, secret_name: str, ttl_seconds: float) -> None:
        self._sidecar = sidecar
        self._secret_name = secret_name
        self._ttl = ttl_seconds
        self._keys: tuple[str, ...] = ()
        self._loaded_at = float("-inf")

    async def current(self) -> tuple[str, ...]:
        if time.monotonic() - self._loaded_at > self._ttl:
            secret = await self._sidecar.get_secret(self._secret_name)
            raw = secret.get(self._secret_name) or next(iter(secret.values()), "")
            self._keys = tuple(key.strip() for key in raw.split(",") if key.strip())
            self._loaded_at = time.monotonic()
        return self._keys

    async def is_valid(self, presented: str) -> bool:
        keys = await self.current()
        # Check every key, so the time taken does not tell which one nearly matched.
        matches = [tokens_match(presented, key) for key in keys]
        return any(matches)


_bearer = HTTPBearer(auto_error=False, description="An API key of the platform, as `Authorization: Bearer <key>`.")


async def require_api_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    presented = credentials.credentials if credentials else request.headers.get("x-api-key")
    unauthorized = Problem(401, "A valid API key is required.", headers={"WWW-Authenticate": "Bearer"})
    if not presented:
        raise unauthorized
    try:
        valid = await request.app.state.api_keys.is_valid(presented)
    except DaprError as error:
        raise Problem(503, "API keys cannot be read from the secret store right now.") from error
    if not valid:
        raise unauthorized
    return presented


ApiKeyDep = Annotated[str, Depends(require_api_key)]
