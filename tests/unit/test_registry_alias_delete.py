"""A deleted alias's `model.promoted` is published even when the first publish fails: the client's
retry of the DELETE publishes it again, as a retried PUT does (against the fake sidecar)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from test_store_conflicts import catalog, ready_version

from fakes import FakeDapr
from genai_platform.contracts.registry import NewModel
from genai_platform.dapr import DaprError
from genai_platform.events import Topic
from registry.errors import AliasNotFound
from registry.lifecycle import point_alias, remove_alias


def failing_publishes(dapr: FakeDapr) -> list[int]:
    """Make publishes fail, as daprd answers them when the broker is down, as many times as the
    returned list's one item says (0 at first). Call before `sidecar()`."""
    answer = dapr.handle
    left = [0]

    async def handle(request: httpx.Request) -> httpx.Response:
        if "/v1.0/publish/" in request.url.path and left[0] > 0:
            left[0] -= 1
            return httpx.Response(500, json={"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "broker down"})
        return await answer(request)

    dapr.handle = handle  # type: ignore[method-assign]
    return left


def deletions(dapr: FakeDapr) -> list[tuple[str, int]]:
    return [(e["alias"], e["previous_version"]) for e in dapr.topics(Topic.MODEL_PROMOTED) if e["version"] is None]


@pytest.mark.parametrize("store", ["redis", "postgresql"])
def test_a_delete_whose_publish_failed_publishes_again_when_retried_then_is_a_404(store: str) -> None:
    dapr = FakeDapr(store)
    failures = failing_publishes(dapr)
    registry = catalog(dapr)
    sidecar = registry._sidecar

    async def scenario() -> None:
        await registry.create_model(NewModel(name="chat"))
        number = await ready_version(registry, dapr, "chat")
        await point_alias(registry, sidecar, "chat", "production", number)
        failures[0] = 2
        for _ in range(2):  # the alias is gone after the first; each failed publish is the client's error
            with pytest.raises(DaprError):
                await remove_alias(registry, sidecar, "chat", "production")
        assert "production" not in (await registry.get_model("chat"))[0].aliases
        assert deletions(dapr) == []
        await remove_alias(registry, sidecar, "chat", "production")  # the retry: 204, published
        assert deletions(dapr) == [("production", number)]
        with pytest.raises(AliasNotFound):  # announced: a further delete is a 404, publishing nothing
            await remove_alias(registry, sidecar, "chat", "production")
        assert deletions(dapr) == [("production", number)]
        with pytest.raises(AliasNotFound):  # never set: a 404
            await remove_alias(registry, sidecar, "chat", "staging")
        assert not [key for key in dapr.state if key.startswith("unannounced:")]

    asyncio.run(scenario())


def test_a_delete_published_at_once_leaves_no_record_and_a_second_delete_is_a_404() -> None:
    dapr = FakeDapr()
    registry = catalog(dapr)
    sidecar = registry._sidecar

    async def scenario() -> None:
        await registry.create_model(NewModel(name="chat"))
        number = await ready_version(registry, dapr, "chat")
        await point_alias(registry, sidecar, "chat", "production", number)
        await remove_alias(registry, sidecar, "chat", "production")
        with pytest.raises(AliasNotFound):
            await remove_alias(registry, sidecar, "chat", "production")
        assert deletions(dapr) == [("production", number)]
        assert not [key for key in dapr.state if key.startswith("unannounced:")]

    asyncio.run(scenario())
