"""The ui's one way into the platform: the gateway's public API, through this app's own Dapr sidecar
(service invocation to the gateway's app-id), with the signed-in user's API key.

Every refusal becomes a `PlatformError` whose `message` says in words what happened and what to
do (401: the key; 422: the field; 429: when to retry; 503: which service), for the page to show.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx

from genai_platform.dapr import Sidecar


class PlatformError(Exception):
    """The gateway (or the way to it) refused or failed a call; `message` is for people."""

    def __init__(self, status: int, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _problem_fields(body: Any) -> str:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return ""
    named = [
        f"{e.get('location') or 'request'}: {e.get('message') or 'not valid'}" for e in errors if isinstance(e, dict)
    ]
    return "; ".join(named)


def error_from_response(status: int, headers: Mapping[str, str], content: bytes) -> PlatformError:
    """Words for a refusal, from the problem+json body and headers the gateway sent."""
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        body = {}
    detail = str(body.get("detail") or "") if isinstance(body, dict) else ""
    retry = headers.get("retry-after")
    retry_after = int(retry) if retry and retry.isdigit() else None
    if status == 401:
        return PlatformError(401, "The platform refused the API key (401). Sign in again with a valid key.")
    if status == 422:
        fields = _problem_fields(body)
        return PlatformError(422, f"The platform found the request not valid (422): {fields or detail}.")
    if status == 429:
        wait = f" Try again in {retry_after} seconds." if retry_after else ""
        return PlatformError(429, f"Too many requests for this key (429): {detail}{wait}", retry_after=retry_after)
    if status == 503:
        wait = f" Try again in {retry_after} seconds." if retry_after else " Try again shortly."
        return PlatformError(503, f"{detail or 'A service is unavailable'} (503).{wait}", retry_after=retry_after)
    if status >= 500:
        return PlatformError(status, f"The platform failed this request ({status}): {detail or 'no detail given'}.")
    return PlatformError(status, f"{detail or 'The platform refused this request'} ({status}).")


UNREACHABLE = "The gateway cannot be reached right now (503). Try again shortly."


class Gateway:
    """Calls to the gateway's public API as one user (their API key)."""

    def __init__(self, sidecar: Sidecar, app_id: str, timeout: float) -> None:
        self._sidecar = sidecar
        self._app_id = app_id
        self._timeout = timeout

    def _headers(self, api_key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}", **(extra or {})}

    async def request(
        self,
        method: str,
        path: str,
        api_key: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """The gateway's answer to one call; a refusal (status >= 400) raises PlatformError."""
        query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        target = f"{path}?{urlencode(query, doseq=True)}" if query else path
        try:
            response = await self._sidecar.invoke(
                self._app_id,
                target,
                method=method,
                json_body=json_body,
                content=content,
                headers=self._headers(api_key, headers),
                timeout=timeout or self._timeout,
            )
        except httpx.HTTPError as error:
            raise PlatformError(503, UNREACHABLE) from error
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.headers, response.content)
        return response

    async def json(self, method: str, path: str, api_key: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, api_key, **kwargs)
        return response.json() if response.content else None

    @asynccontextmanager
    async def stream(self, path: str, api_key: str, json_body: Any, *, timeout: float) -> AsyncIterator[httpx.Response]:
        """A streamed POST (server-sent events); leaving the block closes it, which ends generation."""
        try:
            async with self._sidecar.invoke_stream(
                self._app_id, path, json_body=json_body, headers=self._headers(api_key, None), timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    raise error_from_response(response.status_code, response.headers, await response.aread())
                yield response
        except httpx.HTTPError as error:
            raise PlatformError(503, UNREACHABLE) from error
