"""Every answer carries a request id: the caller's when it is plain, a fresh one otherwise."""

import httpx
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.settings import GatewaySettings
from genai_platform.service import create_service
from genai_platform.settings import ServiceSettings


def client() -> TestClient:
    settings = ServiceSettings.model_validate({"APP_ID": "demo", "APP_PORT": "1", "DAPR_HTTP_PORT": "9"})
    return TestClient(create_service(settings, title="demo"))


def test_a_plain_caller_id_is_echoed() -> None:
    assert client().get("/healthz", headers={"X-Request-Id": "req-42"}).headers["x-request-id"] == "req-42"


def test_a_missing_or_hostile_id_is_replaced() -> None:
    fresh = client().get("/healthz").headers["x-request-id"]
    assert len(fresh) == 32
    hostile = client().get("/healthz", headers={"X-Request-Id": "a\u0000b" + "x" * 300})
    assert hostile.headers["x-request-id"] != "a\u0000b" + "x" * 300


# --- answers made outside the routes: the gateway's size limits and an unhandled error ----------

HOSTILE_DETAIL = "secret connection string postgres://user:pw@db"


def gateway_client() -> TestClient:
    """The real gateway app (its own middleware order) with small limits and one route that fails."""
    settings = GatewaySettings.model_validate(
        {
            "APP_ID": "gateway",
            "APP_PORT": "1",
            "GATEWAY_MAX_MODEL_BODY_BYTES": "2048",
            "GATEWAY_MAX_HEADER_BYTES": "4096",
        }
    )
    app = create_app(settings)

    async def fails() -> None:
        raise RuntimeError(HOSTILE_DETAIL)

    app.add_api_route("/v1/fails", fails)
    # The 500 is answered, not raised into the test.
    return TestClient(app, raise_server_exceptions=False)


def assert_problem_with_id(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "req-7"
    assert response.json()["status"] == status
    assert "Traceback" not in response.text and HOSTILE_DETAIL not in response.text


def test_a_413_a_431_and_a_500_carry_the_request_id_as_problems() -> None:
    client = gateway_client()
    ids = {"X-Request-Id": "req-7"}
    assert_problem_with_id(client.post("/v1/chat/completions", content=b"x" * 2049, headers=ids), 413)
    assert_problem_with_id(
        client.post("/v1/chat/completions", content=b"{}", headers={**ids, "x-big": "h" * 5000}), 431
    )
    assert_problem_with_id(client.get("/v1/fails", headers=ids), 500)
