"""State with ETags and transactions, and secrets, through a real sidecar with the platform's client."""

import asyncio
import uuid

from genai_platform.dapr import Sidecar
from genai_platform.settings import ServiceSettings
from harness import load_profile
from state_contract import expected, run_all


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


def test_the_state_store_answers_as_the_unit_tests_fake_does(start_app, profile) -> None:
    """ETags, first-write, deletes and transactions (tests/state_contract.py) on the real store.

    The unit tests' fake (tests/fakes.py) runs the same scenarios; a difference here means the
    fake, or the store, changed. Redis' transactions do not roll back: that is one expectation.
    """
    registry = start_app("registry", profile)

    async def scenario() -> dict:
        sidecar = client_for(registry)
        try:
            return await run_all(sidecar, f"contract-{uuid.uuid4()}")
        finally:
            await sidecar.aclose()

    assert asyncio.run(scenario()) == expected(load_profile(profile).store)


def test_a_secret_is_read_from_the_local_store(start_app, default_broker, secrets) -> None:
    gateway = start_app("gateway")

    async def scenario() -> dict[str, str]:
        sidecar = client_for(gateway)
        try:
            return await sidecar.get_secret("gateway-api-keys")
        finally:
            await sidecar.aclose()

    assert asyncio.run(scenario()) == {"gateway-api-keys": secrets["gateway-api-keys"]}
