"""Every answer carries a request id: the caller's when it is plain, a fresh one otherwise."""

from fastapi.testclient import TestClient

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
