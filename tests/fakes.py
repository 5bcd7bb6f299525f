"""One fake Dapr sidecar for unit tests: Dapr's HTTP API over dicts, behind the real `Sidecar`.

`FakeDapr` answers the requests `genai_platform.dapr.Sidecar` sends (state with ETags,
transactions, bulk get, publish, bulk publish, service invocation, secrets, health) through an
`httpx.MockTransport`, so domain code takes `FakeDapr().sidecar()` unchanged and the client's own
serialisation and error mapping (409 -> `StateConflict`) run too. No process, no network.

State follows the component it names, read from components-contrib 1.18.3 (the version daprd is
built with) and checked against the real stores by `tests/state_contract.py`, which runs the same
scenarios here (tests/unit/test_fakes.py) and through real sidecars
(tests/integration/test_state_and_secrets.py):

- `redis` (state.redis, `setDefaultQuery`): the ETag is a version counter ("1", "2", ...); a write
  with an ETag succeeds when the key is absent or the ETag matches; without an ETag it succeeds
  unless the key was last written with first-write concurrency (then it is create-only);
  `last-write` ignores a given ETag; a delete with an ETag on an absent key succeeds; a transaction
  does not roll back (each step fails alone).
- `postgresql` (state.postgresql v2): the ETag is a random UUID; a write with an ETag updates only
  an existing row with that ETag; first-write without an ETag is create-only; a delete with an
  ETag needs the row; a transaction rolls back.

Dapr's answers: an ETag mismatch is 409 (`ERR_STATE_SAVE` / `ERR_STATE_DELETE`), a malformed
ETag 400 on Redis, any other store failure 500, a failed transaction 500 `ERR_STATE_TRANSACTION`
(dapr/dapr 1.18 pkg/api/http/http.go). Time to live (`ttlInSeconds`) is recorded, not enforced.
A request the fake does not know fails the test with an AssertionError naming it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import httpx

from genai_platform.dapr import Sidecar
from genai_platform.settings import ServiceSettings

StoreKind = Literal["redis", "postgresql"]
# What an invocation answers: a JSON value (200), a ready response, an exception to raise (the
# connection failed), or a function of the request returning either (sync or async).
Answer = Any | httpx.Response | BaseException | Callable[[httpx.Request], Any]

# The words of components-contrib's ETag errors (state/errors.go), which the client reads.
MISMATCH = "possible etag mismatch. error from state store"
INVALID = "invalid etag value"

STATE_STORE = "statestore"
PUBSUB = "pubsub"
SECRET_STORE = "secretstore"


class StoreError(Exception):
    """One state step failed the way the component fails it; `status` is daprd's HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Record:
    """One key as the store holds it."""

    value: Any
    etag: str
    first_write: bool = False  # Redis marks keys written with first-write concurrency
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """One event published through the sidecar: its topic, payload and publish metadata."""

    pubsub: str
    topic: str
    data: Any
    metadata: dict[str, str]


@dataclass(frozen=True)
class Invocation:
    """One service invocation: target app-id, method (the path after `/method/`), verb, JSON body."""

    app_id: str
    method: str
    http_method: str
    body: Any


class FakeStateStore:
    """A state component's ETag, first-write and transaction rules over a dict (see module doc)."""

    def __init__(self, kind: StoreKind = "redis") -> None:
        self.kind = kind
        self.records: dict[str, Record] = {}

    def _new_etag(self, key: str) -> str:
        if self.kind == "redis":
            previous = self.records.get(key)
            return str(int(previous.etag) + 1 if previous else 1)
        return str(uuid.uuid4())

    def _check_etag(self, etag: str) -> None:
        if self.kind == "redis":
            try:
                int(etag)
            except ValueError:
                raise StoreError(400, f"{INVALID}: {etag!r}") from None
        else:
            try:
                uuid.UUID(etag)
            except ValueError:
                raise StoreError(409, f"{MISMATCH}: {etag!r} is not a UUID") from None

    def set(
        self,
        key: str,
        value: Any,
        etag: str | None,
        concurrency: str | None,
        metadata: Mapping[str, str] | None = None,
        *,
        in_transaction: bool = False,
    ) -> None:
        """Write one key, or raise StoreError as the component would."""
        etag = etag or None
        current = self.records.get(key)
        if self.kind == "redis":
            if etag is not None and concurrency != "last-write":
                self._check_etag(etag)
            given = "0" if concurrency == "last-write" or etag is None else etag
            allowed = current is None or current.etag == given or (not current.first_write and given == "0")
            if not allowed:
                # Without an ETag the component's error is no ETag error: daprd answers 500.
                if etag is not None:
                    raise StoreError(409, f"{MISMATCH}: failed to set key {key}")
                raise StoreError(500, f"failed to set key {key}")
            # In a transaction the script gets no first-write argument, so it never marks a key.
            first_write = (current.first_write if current else False) or (
                concurrency == "first-write" and not in_transaction
            )
        else:
            if etag is not None:
                self._check_etag(etag)
                if current is None or current.etag != etag:
                    raise StoreError(409, MISMATCH)
            elif current is not None and concurrency == "first-write":
                raise StoreError(500, "no item was updated")
            first_write = False
        self.records[key] = Record(copy.deepcopy(value), self._new_etag(key), first_write, dict(metadata or {}))

    def delete(self, key: str, etag: str | None) -> None:
        """Delete one key, or raise StoreError as the component would."""
        etag = etag or None
        current = self.records.get(key)
        if etag is None:
            pass
        elif self.kind == "redis":
            # Redis compares the ETag as a string: no format check, an absent key passes.
            if current is not None and current.etag != etag:
                raise StoreError(409, f"{MISMATCH}: failed to delete {key}")
        else:
            self._check_etag(etag)
            if current is None or current.etag != etag:
                raise StoreError(409, MISMATCH)
        self.records.pop(key, None)

    def transact(self, operations: list[dict[str, Any]]) -> None:
        """Apply a transaction: Redis applies each step that passes, PostgreSQL all or none."""
        before = copy.deepcopy(self.records)
        failures: list[str] = []
        if self.kind == "redis":
            # Redis parses every upsert's ETag before it sends the batch: a malformed one fails it whole.
            for operation in operations:
                request = operation["request"]
                concurrency = (request.get("options") or {}).get("concurrency")
                if operation["operation"] == "upsert" and request.get("etag") and concurrency != "last-write":
                    try:
                        self._check_etag(request["etag"])
                    except StoreError as error:
                        raise StoreError(500, error.message) from None
        for operation in operations:
            request = operation["request"]
            try:
                if operation["operation"] == "upsert":
                    options = request.get("options") or {}
                    self.set(
                        request["key"],
                        request.get("value"),
                        request.get("etag"),
                        options.get("concurrency"),
                        request.get("metadata"),
                        in_transaction=True,
                    )
                elif operation["operation"] == "delete":
                    self.delete(request["key"], request.get("etag"))
                else:
                    raise StoreError(400, f"operation type {operation['operation']} not supported")
            except StoreError as error:
                failures.append(error.message)
                if self.kind == "postgresql":
                    self.records = before
                    break
        if failures:
            raise StoreError(500, "error while executing state transaction: " + "; ".join(failures))


class FakeDapr:
    """Dapr's HTTP API over dicts: state, publish recorder, invoke table, secrets (module doc).

    `sidecar()` gives the platform's real `Sidecar` talking to it. Inspect `state` (key -> value),
    `published`, `invocations`; set answers with `answer(app_id, method, ...)` and secrets in
    `secrets` (name -> {key: value}).
    """

    def __init__(self, store: StoreKind = "redis", *, app_id: str = "app") -> None:
        self.app_id = app_id
        self.store = FakeStateStore(store)
        self.published: list[Published] = []
        self.invocations: list[Invocation] = []
        self.answers: dict[tuple[str, str], Answer] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.requests: list[httpx.Request] = []

    # --- what tests set up and read ----------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """Every key the state store holds, with its value (a copy)."""
        return {key: copy.deepcopy(record.value) for key, record in self.store.records.items()}

    def etag(self, key: str) -> str | None:
        """The current ETag of `key`, None when it holds nothing."""
        record = self.store.records.get(key)
        return record.etag if record else None

    def metadata(self, key: str) -> dict[str, str]:
        """The metadata (e.g. `ttlInSeconds`) `key` was last written with."""
        return dict(self.store.records[key].metadata)

    def answer(self, app_id: str, method: str, answer: Answer) -> None:
        """Make invoking `method` of `app_id` answer `answer` (see `Answer`); leading '/' ignored."""
        self.answers[(app_id, method.lstrip("/"))] = answer

    def topics(self, topic: str) -> list[Any]:
        """The payloads published on `topic`, oldest first."""
        return [event.data for event in self.published if event.topic == topic]

    def sidecar(self, app_id: str | None = None, **settings: str) -> Sidecar:
        """The platform's `Sidecar` client, its requests answered by this fake."""
        values = {"APP_ID": app_id or self.app_id, "APP_PORT": "1", **settings}
        client = httpx.AsyncClient(base_url="http://dapr", transport=httpx.MockTransport(self.handle))
        return Sidecar(ServiceSettings.model_validate(values), client)

    # --- Dapr's HTTP API ---------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request to daprd's HTTP API as daprd would."""
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?", 1)[0]
        parts = [unquote(part) for part in path.strip("/").split("/")]
        match parts:
            case ["v1.0", "healthz", *_]:
                return httpx.Response(204)
            case ["v1.0", "invoke", app_id, "method", *method]:
                return await self._invoke(request, app_id, "/".join(method))
            case ["v1.0", "publish", pubsub, topic]:
                metadata = {
                    name.removeprefix("metadata."): value
                    for name, value in request.url.params.items()
                    if name.startswith("metadata.")
                }
                self.published.append(Published(pubsub, topic, _json(request), metadata))
                return httpx.Response(204)
            case ["v1.0-alpha1", "publish", "bulk", pubsub, topic]:
                for entry in _json(request):
                    self.published.append(Published(pubsub, topic, entry["event"], {}))
                return httpx.Response(204)
            case ["v1.0", "state", _store, "bulk"] if request.method == "POST":
                return self._bulk_get(_json(request)["keys"])
            case ["v1.0", "state", _store, "transaction"] if request.method == "POST":
                return self._state_call("ERR_STATE_TRANSACTION", self.store.transact, _json(request)["operations"])
            case ["v1.0", "state", _store] if request.method == "POST":
                return self._state_call("ERR_STATE_SAVE", self._save, _json(request))
            case ["v1.0", "state", _store, key] if request.method == "GET":
                record = self.store.records.get(key)
                if record is None:
                    return httpx.Response(204)
                return httpx.Response(200, json=record.value, headers={"etag": record.etag})
            case ["v1.0", "state", _store, key] if request.method == "DELETE":
                return self._state_call("ERR_STATE_DELETE", self.store.delete, key, request.headers.get("if-match"))
            case ["v1.0", "secrets", store, name]:
                if name not in self.secrets:
                    return _error(
                        500, "ERR_SECRET_GET", f"failed getting secret with key {name} from secret store {store}"
                    )
                return httpx.Response(200, json=self.secrets[name])
        raise AssertionError(f"the fake sidecar does not answer {request.method} {request.url}")

    def _save(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            options = item.get("options") or {}
            self.store.set(
                item["key"], item.get("value"), item.get("etag"), options.get("concurrency"), item.get("metadata")
            )

    def _state_call(self, code: str, call: Callable[..., None], *args: Any) -> httpx.Response:
        try:
            call(*args)
        except StoreError as error:
            return _error(error.status, code, error.message)
        return httpx.Response(204)

    def _bulk_get(self, keys: list[str]) -> httpx.Response:
        items = []
        for key in keys:
            record = self.store.records.get(key)
            items.append({"key": key, "data": record.value, "etag": record.etag} if record else {"key": key})
        return httpx.Response(200, json=items)

    async def _invoke(self, request: httpx.Request, app_id: str, method: str) -> httpx.Response:
        body = _json(request) if request.content and "json" in request.headers.get("content-type", "") else None
        self.invocations.append(Invocation(app_id, method, request.method, body))
        if (app_id, method) not in self.answers:
            # What daprd answers when it cannot reach the app (down, or no such app-id).
            return _error(500, "ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id}, err: couldn't find service")
        answer = self.answers[(app_id, method)]
        if callable(answer) and not isinstance(answer, BaseException | httpx.Response):
            answer = answer(request)
            if isinstance(answer, Awaitable):
                answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, json=answer)


def _json(request: httpx.Request) -> Any:
    return json.loads(request.content)


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errorCode": code, "message": message})


def interleaved(dapr: FakeDapr) -> FakeDapr:
    """Make every sidecar call yield to the event loop first, as a real one does, so that writers
    gathered with asyncio race on their reads and writes (without it each runs to its end alone).
    Call before `sidecar()`."""
    answer = dapr.handle

    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return await answer(request)

    dapr.handle = handle  # type: ignore[method-assign]
    return dapr
