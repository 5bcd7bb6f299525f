"""The one client of the model registry, through Dapr service invocation, with one error family.

Training (base models, registration, the workflow's promotion), inference (the version it
serves) and the model download code all call the registry through `RegistryClient`; its answers
are the registry's own contracts (genai_platform.contracts.registry). Every refusal or failure
is a `RegistryError` carrying the registry's status and problem detail: `RegistryNotFound` (404),
`RegistryConflict` (409), `RegistryUnavailable` (not reachable, 408, 429 or 5xx: worth retrying),
or `RegistryError` itself for any other refusal (422, 413, 415).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from genai_platform.contracts.registry import Artifact, Model, NewModel, NewVersion, UploadedPart, Version
from genai_platform.dapr import Sidecar
from genai_platform.errors import is_transient_status

M = TypeVar("M", bound=BaseModel)

REGISTRY_APP_ID = "registry"


class RegistryError(Exception):
    """The registry refused or failed a call: `status` is its HTTP status (503 when unreachable),
    `detail` its problem detail (or a short description), `body` the problem+json it answered."""

    def __init__(self, status: int, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"the registry answered {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body or {}

    @property
    def transient(self) -> bool:
        """True when the same call may succeed later (genai_platform.errors.is_transient reads this)."""
        return is_transient_status(self.status)


class RegistryNotFound(RegistryError):
    """No such model, version, alias or file (404)."""


class RegistryConflict(RegistryError):
    """The call contradicts the registry's state (409): a name taken, a version frozen or not ready."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or could not answer (408, 429, 5xx, or no answer: 503)."""


def _error_for(status: int, detail: str, body: dict[str, Any] | None = None) -> RegistryError:
    if status == 404:
        return RegistryNotFound(status, detail, body)
    if status == 409:
        return RegistryConflict(status, detail, body)
    if is_transient_status(status):
        return RegistryUnavailable(status, detail, body)
    return RegistryError(status, detail, body)


def _path(*parts: str | int) -> str:
    return "v1/models/" + "/".join(quote(str(part), safe="") for part in parts)


class RegistryClient:
    """The registry's API, typed: each method answers a contract or raises a `RegistryError`."""

    def __init__(self, sidecar: Sidecar, app_id: str = REGISTRY_APP_ID) -> None:
        self.sidecar = sidecar
        self.app_id = app_id

    # --- models -------------------------------------------------------------------------------

    async def create_model(self, new: NewModel) -> Model:
        """Register a model; RegistryConflict when the name is taken."""
        return await self._call("POST", "v1/models", Model, json_body=new.model_dump())

    async def get_model(self, name: str) -> Model:
        """A model with its aliases; RegistryNotFound when there is none."""
        return await self._call("GET", _path(name), Model)

    # --- versions -----------------------------------------------------------------------------

    async def get_version(self, name: str, reference: str | int) -> Version:
        """A version by number, alias or `latest` (the newest ready one); RegistryNotFound when none."""
        return await self._call("GET", _path(name, "versions", reference), Version)

    async def create_version(self, name: str, new: NewVersion) -> Version:
        """Add the next numbered version (pending until its files are in)."""
        return await self._call("POST", _path(name, "versions"), Version, json_body=new.model_dump())

    async def upload_part(
        self, name: str, number: int, filename: str, index: int, data: bytes, *, timeout: float = 120
    ) -> UploadedPart:
        """Store part `index` of a file (at most the registry's part size); RegistryConflict once ready."""
        path = _path(name, "versions", number, "files", filename, "parts", index)
        return await self._call("PUT", path, UploadedPart, content=data, timeout=timeout)

    async def complete_file(
        self, name: str, number: int, filename: str, parts: int, sha256: str, *, timeout: float = 300
    ) -> Artifact:
        """Check the uploaded parts against the whole file's sha256 (hex) and record the file."""
        path = _path(name, "versions", number, "files", filename, "complete")
        body = {"parts": parts, "sha256": sha256}
        return await self._call("POST", path, Artifact, json_body=body, timeout=timeout)

    async def mark_ready(self, name: str, number: int) -> Version:
        """Freeze a version's files (idempotent); the registry publishes model.registered."""
        return await self._call("POST", _path(name, "versions", number, "ready"), Version)

    async def move_alias(self, name: str, alias: str, number: int) -> Model:
        """Point `alias` at a ready version (idempotent); the registry publishes model.promoted."""
        return await self._call("PUT", _path(name, "aliases", alias), Model, json_body={"version": number})

    @asynccontextmanager
    async def download(
        self, name: str, number: int, filename: str, *, timeout: float = 300
    ) -> AsyncIterator[httpx.Response]:
        """A version's file as a streamed response (read it with `aiter_bytes`); the registry
        checks it against its sha256 before answering. RegistryError when it cannot be had."""
        path = _path(name, "versions", number, "files", filename)
        try:
            async with self.sidecar.invoke_stream(self.app_id, path, method="GET", timeout=timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _refusal(response)
                yield response
        except httpx.TransportError as error:
            raise RegistryUnavailable(503, f"the registry cannot be reached ({type(error).__name__})") from error

    # --- internals ----------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        answer: type[M],
        *,
        json_body: Any = None,
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> M:
        try:
            response = await self.sidecar.invoke(
                self.app_id, path, method=method, json_body=json_body, content=content, timeout=timeout
            )
        except httpx.TransportError as error:
            raise RegistryUnavailable(503, f"the registry cannot be reached ({type(error).__name__})") from error
        if response.status_code >= 400:
            raise _refusal(response)
        return answer.model_validate(response.json())


def _refusal(response: httpx.Response) -> RegistryError:
    """The registry's problem+json (or daprd's error) as a RegistryError of the matching kind."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    # daprd answers for an app it cannot reach with its own {"errorCode", "message"}.
    detail = body.get("detail") or body.get("message") or response.text[:300] or response.reason_phrase
    return _error_for(response.status_code, str(detail), body)
