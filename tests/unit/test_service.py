"""The app factory: health, readiness, metrics and the app-token check, without processes."""

import pytest
from fastapi.testclient import TestClient

from genai_platform.service import create_service
from genai_platform.settings import ServiceSettings

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
