"""State with ETags and transactions, and secrets, through a real sidecar with the platform's client."""

import asyncio
import uuid

import pytest

from genai_platform.dapr import Sidecar, StateConflict, StateOperation
from genai_platform.settings import ServiceSettings


def client_for(pair) -> Sidecar:
    settings = ServiceSettings.model_validate(
        {
            "APP_ID": pair.app.app_id,
            "APP_PORT": str(pair.app.port),
            "DAPR_HTTP_PORT": str(pair.sidecar.http_port),
            "DAPR_API_TOKEN": pair.sidecar.dapr_api_token,
        }
    )
    return Sidecar(settings)


def test_a_stale_etag_is_a_conflict_and_writes_nothing(start_app, profile) -> None:
    registry = start_app("registry", profile)
    key = f"model-{uuid.uuid4()}"

    async def scenario() -> None:
        sidecar = client_for(registry)
        try:
            await sidecar.save_state(key, {"alias": "staging", "version": 1})
            first = await sidecar.get_state(key)
            assert first is not None and first.etag
            await sidecar.save_state(key, {"alias": "staging", "version": 2}, etag=first.etag)
            with pytest.raises(StateConflict):
                await sidecar.save_state(key, {"alias": "staging", "version": 3}, etag=first.etag)
            current = await sidecar.get_state(key)
            assert current is not None
            assert current.value == {"alias": "staging", "version": 2}
            assert current.etag != first.etag
        finally:
            await sidecar.aclose()

    asyncio.run(scenario())


def test_a_transaction_is_all_or_nothing(start_app, profile, request) -> None:
    if profile == "default":
        # Dapr's Redis store runs a transaction as MULTI/EXEC of Lua scripts: a failed ETag check
        # fails its own step and the others still apply ("Redis does not support transaction
        # rollbacks", components-contrib state/redis). Strict: this fails once Redis rolls back.
        request.applymarker(pytest.mark.xfail(strict=True, reason="Redis transactions do not roll back"))
    registry = start_app("registry", profile)
    prefix = f"tx-{uuid.uuid4()}"

    async def scenario() -> None:
        sidecar = client_for(registry)
        try:
            await sidecar.save_state(f"{prefix}-alias", {"production": 1})
            stale = (await sidecar.get_state(f"{prefix}-alias")).etag
            await sidecar.save_state(f"{prefix}-alias", {"production": 2})

            with pytest.raises(StateConflict):
                await sidecar.transact(
                    [
                        StateOperation("upsert", f"{prefix}-version-3", {"version": 3}),
                        StateOperation("upsert", f"{prefix}-alias", {"production": 3}, etag=stale),
                    ]
                )
            assert await sidecar.get_state(f"{prefix}-version-3") is None
            assert (await sidecar.get_state(f"{prefix}-alias")).value == {"production": 2}

            await sidecar.transact(
                [
                    StateOperation("upsert", f"{prefix}-version-3", {"version": 3}),
                    StateOperation("delete", f"{prefix}-alias"),
                ]
            )
            assert (await sidecar.get_state(f"{prefix}-version-3")).value == {"version": 3}
            assert await sidecar.get_state(f"{prefix}-alias") is None
        finally:
            await sidecar.aclose()

    asyncio.run(scenario())


def test_a_secret_is_read_from_the_local_store(start_app, default_broker, secrets) -> None:
    gateway = start_app("gateway")

    async def scenario() -> dict[str, str]:
        sidecar = client_for(gateway)
        try:
            return await sidecar.get_secret("gateway-api-keys")
        finally:
            await sidecar.aclose()

    assert asyncio.run(scenario()) == {"gateway-api-keys": secrets["gateway-api-keys"]}
