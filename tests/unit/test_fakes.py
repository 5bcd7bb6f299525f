"""The unit tests' fake sidecar answers as daprd and the real state stores do.

The state scenarios are the ones tests/integration/test_state_and_secrets.py runs through real
sidecars against Redis and PostgreSQL; here they run against the fake in both flavours.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fakes import FakeDapr
from genai_platform.dapr import DaprError, StateConflict
from state_contract import STORES, expected, run_all


@pytest.mark.parametrize("store", STORES)
def test_state_follows_the_real_stores_etag_first_write_and_transaction_rules(store) -> None:
    sidecar = FakeDapr(store).sidecar()
    assert asyncio.run(run_all(sidecar, "contract")) == expected(store)


def test_publish_and_bulk_publish_are_recorded_with_their_metadata() -> None:
    dapr = FakeDapr()
    sidecar = dapr.sidecar()

    async def scenario() -> None:
        await sidecar.publish("documents.ingested", {"id": "d1"}, metadata={"ttlInSeconds": "60"})
        await sidecar.publish_many("chunks", [("1", {"n": 1}), ("2", {"n": 2})])

    asyncio.run(scenario())
    assert dapr.topics("documents.ingested") == [{"id": "d1"}]
    assert dapr.published[0].metadata == {"ttlInSeconds": "60"} and dapr.published[0].pubsub == "pubsub"
    assert dapr.topics("chunks") == [{"n": 1}, {"n": 2}]


def test_invocations_are_answered_from_the_table_and_an_unknown_app_is_unreachable() -> None:
    dapr = FakeDapr()
    dapr.answer("guard", "v1/check", {"allowed": True})
    dapr.answer("registry", "/v1/models/m", httpx.Response(404, json={"title": "Not Found"}))
    dapr.answer("prompts", "v1/prompts/p", lambda request: {"echo": request.url.params["label"]})
    dapr.answer("inference", "v1/chat/completions", httpx.ConnectError("refused"))
    sidecar = dapr.sidecar()

    async def scenario() -> list:
        checked = await sidecar.invoke("guard", "v1/check", json_body={"text": "hi"})
        missing = await sidecar.invoke("registry", "v1/models/m", method="GET")
        rendered = await sidecar.invoke("prompts", "v1/prompts/p?label=production", method="GET")
        down = await sidecar.invoke("nobody", "v1/x")
        with pytest.raises(httpx.ConnectError):
            await sidecar.invoke("inference", "v1/chat/completions", json_body={})
        return [checked.json(), missing.status_code, rendered.json(), down.status_code, down.json()["errorCode"]]

    assert asyncio.run(scenario()) == [{"allowed": True}, 404, {"echo": "production"}, 500, "ERR_DIRECT_INVOKE"]
    assert [(call.app_id, call.method, call.http_method) for call in dapr.invocations[:2]] == [
        ("guard", "v1/check", "POST"),
        ("registry", "v1/models/m", "GET"),
    ]
    assert dapr.invocations[0].body == {"text": "hi"}


def test_a_streamed_invocation_arrives_in_the_chunks_the_answer_sends() -> None:
    dapr = FakeDapr()

    async def events():
        for chunk in (b"data: one\n\n", b"data: two\n\n"):
            yield chunk

    dapr.answer("inference", "v1/chat/completions", lambda request: httpx.Response(200, content=events()))
    sidecar = dapr.sidecar()

    async def scenario() -> list[bytes]:
        async with sidecar.invoke_stream("inference", "v1/chat/completions", json_body={}) as response:
            return [chunk async for chunk in response.aiter_bytes()]

    assert b"".join(asyncio.run(scenario())) == b"data: one\n\ndata: two\n\n"


def test_secrets_and_an_unknown_secret() -> None:
    dapr = FakeDapr()
    dapr.secrets["gateway-api-keys"] = {"gateway-api-keys": "k1,k2"}
    sidecar = dapr.sidecar()

    async def scenario() -> dict:
        with pytest.raises(DaprError) as missing:
            await sidecar.get_secret("nope")
        assert missing.value.code == "ERR_SECRET_GET"
        return await sidecar.get_secret("gateway-api-keys")

    assert asyncio.run(scenario()) == {"gateway-api-keys": "k1,k2"}


def test_a_request_the_fake_does_not_know_fails_loudly() -> None:
    sidecar = FakeDapr().sidecar()
    with pytest.raises(AssertionError, match="does not answer"):
        asyncio.run(sidecar.invoke_binding("blobstore", "create", data="x"))


def test_a_refused_write_is_a_conflict_only_when_an_etag_failed() -> None:
    sidecar = FakeDapr().sidecar()

    async def scenario() -> None:
        await sidecar.save_state("etag-notes", 1, concurrency="first-write")
        with pytest.raises(DaprError) as taken:
            await sidecar.save_state("etag-notes", 2, concurrency="first-write")
        # daprd's message quotes the key, whose name says "etag": still not an ETag error.
        assert taken.value.status == 500 and not isinstance(taken.value, StateConflict)
        with pytest.raises(StateConflict):
            await sidecar.save_state("etag-notes", 2, etag="not-a-number")

    asyncio.run(scenario())
