"""The event ledger and the bulk state calls it rests on, against a recorded sidecar API."""

import asyncio
import json

import httpx

from genai_platform.dapr import Sidecar
from genai_platform.idempotency import EventLedger
from genai_platform.settings import ServiceSettings


class FakeStateApi:
    """Dapr's state HTTP API over a dict: enough to check what the client sends."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.metadata: dict[str, dict] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/bulk"):
            keys = json.loads(request.content)["keys"]
            return httpx.Response(200, json=[{"key": k, "data": self.values.get(k)} for k in keys])
        if request.method == "POST":
            for item in json.loads(request.content):
                self.values[item["key"]] = item["value"]
                self.metadata[item["key"]] = item.get("metadata", {})
            return httpx.Response(204)
        key = path.rsplit("/", 1)[-1].replace("%3A", ":")
        if key in self.values:
            return httpx.Response(200, json=self.values[key])
        return httpx.Response(204)


def sidecar(api: FakeStateApi) -> Sidecar:
    settings = ServiceSettings.model_validate({"APP_ID": "demo", "APP_PORT": "1"})
    return Sidecar(settings, httpx.AsyncClient(base_url="http://dapr", transport=httpx.MockTransport(api)))


def test_an_event_is_handled_once_recorded_with_a_ttl() -> None:
    api = FakeStateApi()
    ledger = EventLedger(sidecar(api), "features", ttl_s=60)

    async def scenario() -> tuple[bool, bool]:
        before = await ledger.handled("e-1")
        await ledger.record("e-1")
        return before, await ledger.handled("e-1")

    assert asyncio.run(scenario()) == (False, True)
    assert api.metadata[ledger.key("e-1")] == {"ttlInSeconds": "60"}


def test_bulk_read_leaves_out_missing_keys() -> None:
    api = FakeStateApi()
    client = sidecar(api)

    async def scenario() -> dict:
        await client.save_states([("a", {"n": 1}), ("b", [2])])
        return await client.get_bulk_state(["a", "b", "missing"])

    assert asyncio.run(scenario()) == {"a": {"n": 1}, "b": [2]}
