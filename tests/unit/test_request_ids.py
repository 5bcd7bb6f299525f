"""Every answer carries a request id: the caller's when it is plain, a fresh one otherwise."""

import logging

import httpx
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.limits import SizeLimitMiddleware, SizeLimits
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


def requests_counted(app_id: str, status: str) -> float:
    """POST requests `app_id` counted with `status`, whatever their route label (a request refused
    before routing has none)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("app_id") == app_id
        and sample.labels.get("method") == "POST"
        and sample.labels.get("status") == status
    )


def test_the_gateways_size_limit_answers_are_counted_and_logged_with_their_status(caplog) -> None:
    # The gateway's 413 (declared Content-Length) and 431 are answered before any route: they were
    # neither counted nor logged.
    client = gateway_client()
    before = {status: requests_counted("gateway", status) for status in ("413", "431")}
    with caplog.at_level(logging.INFO, logger="genai_platform.access"):
        declared = client.post("/v1/chat/completions", content=b"x" * 2049)
        headers = client.post("/v1/chat/completions", content=b"{}", headers={"x-big": "h" * 5000})
    assert (declared.status_code, headers.status_code) == (413, 431)
    assert requests_counted("gateway", "413") - before["413"] == 1
    assert requests_counted("gateway", "431") - before["431"] == 1
    assert sorted(r.status for r in caplog.records if r.getMessage() == "request served") == [413, 431]


def test_a_chunked_body_over_the_limit_is_counted_as_413_not_500(caplog) -> None:
    # The route reads the body; the size limit stops the read and answers 413. Inside the metrics
    # (create_service's edge_middleware), that is what is counted and logged; it was a 500.
    settings = ServiceSettings.model_validate({"APP_ID": "limits-demo", "APP_PORT": "1", "DAPR_HTTP_PORT": "9"})
    router = APIRouter()

    @router.post("/v1/chat/completions")
    async def read(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    limits = SizeLimits(model_body=2048, upload_body=2048, body=2048, header=4096)
    app = create_service(
        settings,
        title="limits",
        routers=[router],
        open_prefixes=("/v1/",),
        edge_middleware=[(SizeLimitMiddleware, {"limits": limits})],
    )
    client = TestClient(app)
    with caplog.at_level(logging.INFO, logger="genai_platform.access"):
        chunked = client.post("/v1/chat/completions", content=iter([b"x" * 1500, b"x" * 1500]))
        fits = client.post("/v1/chat/completions", content=iter([b"x" * 1000, b"x" * 1000]))
    assert (chunked.status_code, fits.status_code) == (413, 200)
    assert requests_counted("limits-demo", "413") == 1 and requests_counted("limits-demo", "500") == 0
    assert sorted(r.status for r in caplog.records if r.getMessage() == "request served") == [200, 413]
