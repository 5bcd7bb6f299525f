"""Every request is counted by its route template and written as one access line; probes are not logged."""

import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient

from genai_platform.metrics import RequestMetricsMiddleware, metrics_response


def app() -> FastAPI:
    service = FastAPI()

    @service.get("/v1/items/{item_id}")
    async def item(item_id: int) -> dict:
        return {"id": item_id}

    @service.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @service.get("/metrics")
    async def metrics():
        return metrics_response()

    service.add_middleware(RequestMetricsMiddleware, app_id="metrics-test")
    return service


def test_a_request_is_labelled_by_its_route_template_and_logged(caplog) -> None:
    with TestClient(app()) as client, caplog.at_level(logging.INFO, logger="genai_platform.access"):
        assert client.get("/v1/items/7").status_code == 200
        assert client.get("/v1/items/x").status_code == 422
        client.get("/healthz")
        text = client.get("/metrics").text
    assert 'app_id="metrics-test",method="GET",route="/v1/items/{item_id}",status="200"' in text
    assert 'app_id="metrics-test",method="GET",route="/v1/items/{item_id}",status="422"' in text
    served = [(r.method, r.route, r.status) for r in caplog.records if r.getMessage() == "request served"]
    assert served == [("GET", "/v1/items/{item_id}", 200), ("GET", "/v1/items/{item_id}", 422)]
