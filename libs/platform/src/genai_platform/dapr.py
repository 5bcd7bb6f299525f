"""An async client for this app's Dapr sidecar, over Dapr's HTTP API.

HTTP rather than the SDK's gRPC client: it streams service-invocation responses (token
streaming), and httpx's OpenTelemetry instrumentation carries the trace context to daprd.
Every call sends `DAPR_API_TOKEN`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from genai_platform.errors import ConcurrentUpdate
from genai_platform.settings import ServiceSettings

T = TypeVar("T")

Concurrency = Literal["first-write", "last-write"]


class DaprError(Exception):
    """The sidecar refused or failed a call; `code` is Dapr's errorCode when it sent one."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class StateConflict(DaprError):
    """A state write lost an optimistic-concurrency race (stale or missing ETag)."""


async def with_etag_retries(attempt: Callable[[], Awaitable[T]], attempts: int = 20) -> T:
    """Run a read-modify-write under an ETag until it wins; the loser of a race re-reads.

    One key under one ETag is how services change state atomically (Redis transactions do not
    roll back). After `attempts` lost races it raises `ConcurrentUpdate` (a 409 to retry later).
    """
    for _ in range(attempts):
        try:
            return await attempt()
        except StateConflict:
            continue
    raise ConcurrentUpdate("The record kept changing under this update; try again.")


@dataclass(frozen=True)
class StateItem:
    """One key read from the state store: its JSON `value` and the `etag` to write it back with."""

    key: str
    value: Any
    etag: str | None


@dataclass(frozen=True)
class StateOperation:
    """One step of a state transaction: all steps are written, or none."""

    operation: Literal["upsert", "delete"]
    key: str
    value: Any = None
    etag: str | None = None
    concurrency: Concurrency | None = None

    def to_json(self) -> dict[str, Any]:
        """The operation as Dapr's transaction API takes it: `{"operation", "request": {key, value, etag, options}}`."""
        request: dict[str, Any] = {"key": self.key}
        if self.operation == "upsert":
            request["value"] = self.value
        if self.etag is not None:
            request["etag"] = self.etag
        if self.concurrency is not None:
            request["options"] = {"concurrency": self.concurrency}
        return {"operation": self.operation, "request": request}


class Sidecar:
    """This app's view of its daprd: invoke, publish, state, secrets, health."""

    def __init__(self, settings: ServiceSettings, client: httpx.AsyncClient | None = None) -> None:
        headers = {}
        if settings.dapr_api_token is not None:
            headers["dapr-api-token"] = settings.dapr_api_token.get_secret_value()
        self.pubsub = settings.pubsub_name
        self.state_store = settings.state_store
        self.secret_store = settings.secret_store
        self._http = client or httpx.AsyncClient(
            base_url=settings.dapr_url, headers=headers, timeout=httpx.Timeout(30.0, connect=5.0)
        )
        if client is not None:
            self._http.headers.update(headers)

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client on daprd's API (base URL and token set), for calls this class has no method for."""
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client (its pooled connections to daprd)."""
        await self._http.aclose()

    # --- health -----------------------------------------------------------------------------

    async def is_ready(self) -> bool:
        """True once daprd has loaded its components (its outbound side works)."""
        try:
            response = await self._http.get("/v1.0/healthz/outbound", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    # --- service invocation -------------------------------------------------------------------

    async def invoke(
        self,
        app_id: str,
        path: str,
        *,
        method: str = "POST",
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Call another app's route through Dapr; the response comes back as the app sent it.

        The body is `json_body` serialised, or `content` as given (a request being relayed);
        `timeout` in seconds overrides the client's 30 s. An error status is returned, not raised
        (daprd answers 500 `ERR_DIRECT_INVOKE` when it cannot reach the app); raises
        `httpx.HTTPError` when daprd itself cannot be reached or the call times out.
        """
        request = self._invoke_request(app_id, path, method, json_body, content, headers, timeout)
        return await self._http.send(request)

    @asynccontextmanager
    async def invoke_stream(
        self,
        app_id: str,
        path: str,
        *,
        method: str = "POST",
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """Like `invoke`, but the body is read as it arrives (server-sent events)."""
        request = self._invoke_request(app_id, path, method, json_body, content, headers, timeout)
        response = await self._http.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    def _invoke_request(
        self,
        app_id: str,
        path: str,
        method: str,
        json_body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> httpx.Request:
        return self._http.build_request(
            method,
            f"/v1.0/invoke/{quote(app_id, safe='')}/method/{path.lstrip('/')}",
            json=json_body,
            content=content,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )

    # --- pub/sub ------------------------------------------------------------------------------

    async def publish(
        self, topic: str, data: Any, *, metadata: Mapping[str, str] | None = None, pubsub: str | None = None
    ) -> None:
        """Publish `data` (JSON) as the payload of a CloudEvent on `topic`.

        `metadata` goes to the component (e.g. `ttlInSeconds`). Raises `DaprError` when daprd or
        the broker refuses it (a 403 when the topic is not scoped to this app).
        """
        params = {f"metadata.{key}": value for key, value in (metadata or {}).items()}
        response = await self._http.post(
            f"/v1.0/publish/{pubsub or self.pubsub}/{quote(topic, safe='')}", json=data, params=params
        )
        _raise_for_dapr(response)

    async def publish_many(self, topic: str, events: Iterable[tuple[str, Any]], pubsub: str | None = None) -> None:
        """Bulk-publish `(entry_id, data)` pairs in one call; raises `DaprError` if any entry failed."""
        entries = [{"entryId": entry_id, "event": data, "contentType": "application/json"} for entry_id, data in events]
        if not entries:
            return
        response = await self._http.post(
            f"/v1.0-alpha1/publish/bulk/{pubsub or self.pubsub}/{quote(topic, safe='')}", json=entries
        )
        _raise_for_dapr(response)
        failed = response.json().get("failedEntries") if response.content else None
        if failed:
            raise DaprError(500, "ERR_PUBSUB_PUBLISH_MESSAGE", f"{len(failed)} of {len(entries)} entries failed")

    # --- state --------------------------------------------------------------------------------

    async def get_state(self, key: str, *, store: str | None = None) -> StateItem | None:
        """Read one key with its ETag; None when it holds nothing. Raises `DaprError` when the store fails."""
        response = await self._http.get(f"/v1.0/state/{store or self.state_store}/{quote(key, safe='')}")
        _raise_for_dapr(response)
        if response.status_code == 204 or not response.content:
            return None
        return StateItem(key, response.json(), response.headers.get("etag"))

    async def save_state(
        self,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        concurrency: Concurrency | None = None,
        store: str | None = None,
    ) -> None:
        """Write one key; with an `etag` the write fails with `StateConflict` if the key moved on.

        What an ETag or `first-write` does differs between stores (an ETag on an absent key: Redis
        writes, PostgreSQL refuses): tests/state_contract.py pins both. Raises `DaprError` on any
        other failure (first-write without an ETag on a taken key is one: a 500 `ERR_STATE_SAVE`).
        """
        item: dict[str, Any] = {"key": key, "value": value}
        if etag is not None:
            item["etag"] = etag
        if concurrency is not None:
            item["options"] = {"concurrency": concurrency}
        response = await self._http.post(f"/v1.0/state/{store or self.state_store}", json=[item])
        _raise_for_dapr(response)

    async def get_bulk_state(
        self, keys: Iterable[str], *, parallelism: int = 16, store: str | None = None
    ) -> dict[str, Any]:
        """Read many keys in one call: key -> value, keys that hold nothing left out (no ETags).

        `parallelism` is how many reads daprd runs at once. Raises `DaprError` when the store fails.
        """
        keys = list(keys)
        if not keys:
            return {}
        response = await self._http.post(
            f"/v1.0/state/{store or self.state_store}/bulk", json={"keys": keys, "parallelism": parallelism}
        )
        _raise_for_dapr(response)
        return {item["key"]: item["data"] for item in response.json() if item.get("data") is not None}

    async def save_states(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        metadata: Mapping[str, str] | None = None,
        store: str | None = None,
    ) -> None:
        """Write many keys in one call (not a transaction: use `transact` for all-or-nothing).

        `metadata` applies to every item, e.g. `{"ttlInSeconds": "86400"}` on stores with TTLs.
        Raises `DaprError` when the store fails (some items may have been written).
        """
        extra = {"metadata": dict(metadata)} if metadata else {}
        body = [{"key": key, "value": value, **extra} for key, value in items]
        if not body:
            return
        response = await self._http.post(f"/v1.0/state/{store or self.state_store}", json=body)
        _raise_for_dapr(response)

    async def delete_state(self, key: str, *, etag: str | None = None, store: str | None = None) -> None:
        """Delete one key (absent is fine); with an `etag`, raises `StateConflict` if the key moved on."""
        headers = {"If-Match": etag} if etag is not None else None
        response = await self._http.delete(
            f"/v1.0/state/{store or self.state_store}/{quote(key, safe='')}", headers=headers
        )
        _raise_for_dapr(response)

    async def transact(self, operations: Iterable[StateOperation], *, store: str | None = None) -> None:
        """Apply every operation or none of them (PostgreSQL; Redis does not roll back, see tests/state_contract.py).

        Raises `StateConflict` when a step with an ETag may have failed its check (stores report
        it in words of their own), `DaprError` on any other failure.
        """
        operations = list(operations)
        body = {"operations": [op.to_json() for op in operations]}
        response = await self._http.post(f"/v1.0/state/{store or self.state_store}/transaction", json=body)
        try:
            _raise_for_dapr(response)
        except DaprError as error:
            # Stores report a failed ETag check inside a transaction in words of their own
            # (Redis: "failed to set key"); with ETags in play, re-read and retry is the answer.
            if error.code == "ERR_STATE_TRANSACTION" and any(op.etag for op in operations):
                raise StateConflict(error.status, error.code, error.message) from error
            raise

    # --- bindings -----------------------------------------------------------------------------

    async def invoke_binding(
        self, name: str, operation: str, *, data: Any = None, metadata: Mapping[str, str] | None = None
    ) -> bytes:
        """Run an output binding's operation; the answer is the binding's raw bytes. Raises `DaprError`."""
        body: dict[str, Any] = {"operation": operation, "metadata": dict(metadata or {})}
        if data is not None:
            body["data"] = data
        response = await self._http.post(f"/v1.0/bindings/{quote(name, safe='')}", json=body)
        _raise_for_dapr(response)
        return response.content

    # --- workflows ----------------------------------------------------------------------------

    async def start_workflow(self, name: str, instance_id: str, data: Any) -> None:
        """Schedule a workflow run under `instance_id`; the app hosting `name` runs it. Raises `DaprError`."""
        response = await self._http.post(
            f"/v1.0/workflows/dapr/{quote(name, safe='')}/start",
            params={"instanceID": instance_id},
            json=data,
        )
        _raise_for_dapr(response)

    async def get_workflow(self, instance_id: str) -> dict[str, Any] | None:
        """A workflow run's status, input, output and custom status; None when there is no such run."""
        response = await self._http.get(f"/v1.0/workflows/dapr/{quote(instance_id, safe='')}")
        # daprd answers a missing instance with 404 ERR_INSTANCE_ID_NOT_FOUND, or (older paths)
        # 400/500 with "not found" in the message.
        if response.status_code == 404 or (response.status_code in (400, 500) and "not found" in response.text.lower()):
            return None
        _raise_for_dapr(response)
        return response.json()

    async def raise_workflow_event(self, instance_id: str, event: str, data: Any = None) -> None:
        """Deliver external event `event` (with `data`) to a workflow run waiting for it. Raises `DaprError`."""
        response = await self._http.post(
            f"/v1.0/workflows/dapr/{quote(instance_id, safe='')}/raiseEvent/{quote(event, safe='')}", json=data
        )
        _raise_for_dapr(response)

    # --- secrets ------------------------------------------------------------------------------

    async def get_secret(self, name: str, *, store: str | None = None) -> dict[str, str]:
        """Read secret `name` from the secret store: key -> value. Raises `DaprError` when missing or failing."""
        response = await self._http.get(f"/v1.0/secrets/{store or self.secret_store}/{quote(name, safe='')}")
        _raise_for_dapr(response)
        return response.json()


def _raise_for_dapr(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    code, message = "ERR_UNKNOWN", response.reason_phrase
    try:
        body = response.json()
        code = body.get("errorCode", code)
        message = body.get("message", message)
    except (json.JSONDecodeError, AttributeError):
        pass
    # Dapr answers an ETag mismatch with 409, and a malformed ETag with 400 ERR_STATE_SAVE and the
    # store's "invalid etag value" (components-contrib state/errors.go). Not just "etag": the message
    # quotes the key, and a key may say "etag" in its name.
    if response.status_code == 409 or (code == "ERR_STATE_SAVE" and "invalid etag value" in message.lower()):
        raise StateConflict(response.status_code, code, message)
    raise DaprError(response.status_code, code, message)
