"""The app factory: health, readiness, metrics and the app-token check, without processes."""

import asyncio

import pytest
from fastapi.testclient import TestClient

from genai_platform.errors import Problem
from genai_platform.service import create_service
from genai_platform.settings import ServiceSettings
from genai_platform.streaming import while_connected

TOKEN = "app-token-for-tests-0123456789"


def settings(**overrides) -> ServiceSettings:
    values = {"APP_ID": "demo", "APP_PORT": "1", "DAPR_HTTP_PORT": "9", "APP_API_TOKEN": TOKEN, **overrides}
    return ServiceSettings.model_validate(values)


@pytest.fixture
def client() -> TestClient:
    with TestClient(create_service(settings(), title="demo")) as client:
        yield client


def test_probes_and_metrics_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "http_requests_total" in client.get("/metrics").text


def test_readyz_says_why_it_is_not_ready(client: TestClient) -> None:
    # Port 9 has no sidecar, so readiness must fail and say so.
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"app_id": "demo", "ready": False, "reasons": ["the Dapr sidecar is not ready"]}


def test_sidecar_routes_refuse_a_missing_or_wrong_app_token(client: TestClient) -> None:
    assert client.get("/docs").status_code == 401
    assert client.get("/docs", headers={"dapr-api-token": "nearly-" + TOKEN}).status_code == 401
    refused = client.get("/openapi.json")
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.get("/openapi.json", headers={"dapr-api-token": TOKEN}).status_code == 200


def test_placeholder_tokens_are_refused_outside_dev() -> None:
    with pytest.raises(ValueError, match="APP_API_TOKEN"):
        settings(PLATFORM_ENV="production", DAPR_API_TOKEN="a-real-token-123456", APP_API_TOKEN="changeme")
    assert settings(PLATFORM_ENV="production", DAPR_API_TOKEN="x" * 24).environment == "production"


def test_while_connected_cancels_the_work_of_a_client_that_left_and_answers_499() -> None:
    class Leaving:
        """A request whose client is there for `polls` checks, then gone."""

        def __init__(self, polls: int) -> None:
            self.polls = polls

        async def is_disconnected(self) -> bool:
            self.polls -= 1
            return self.polls < 0

    async def scenario() -> tuple[int, bool, str]:
        let_go = asyncio.Event()

        async def generation() -> str:
            try:
                await asyncio.Event().wait()  # never ready by itself
            finally:
                let_go.set()
            return "never"

        try:
            await while_connected(Leaving(2), generation(), poll_s=0.001)  # type: ignore[arg-type]
        except Problem as problem:
            status = problem.status
        done = await while_connected(Leaving(100), asyncio.sleep(0, "answer"), poll_s=0.001)  # type: ignore[arg-type]
        return status, let_go.is_set(), done

    assert asyncio.run(scenario()) == (499, True, "answer")
