"""The monitor's routes when its stores cannot be reached: names them, never a 5xx but the 503 of "all missing"."""

import socket

import pytest
from fastapi.testclient import TestClient

from monitor.app import create_app
from monitor.settings import MonitorSettings


def closed_port() -> int:
    # Bound and never listened on: a connection to it is refused at once.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def client() -> TestClient:
    nowhere = f"http://127.0.0.1:{closed_port()}"
    settings = MonitorSettings(
        PROMETHEUS_URL=nowhere, ALERTMANAGER_URL=nowhere, VICTORIALOGS_URL=nowhere, ZIPKIN_URL=nowhere
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_overview_is_503_naming_every_store_when_none_answers(client: TestClient) -> None:
    response = client.get("/v1/system/overview")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["missing"] == ["prometheus", "alertmanager", "victorialogs"]


def test_logs_and_traces_name_their_missing_store(client: TestClient) -> None:
    assert client.get("/v1/logs").json()["missing"] == ["victorialogs"]
    assert client.get(f"/v1/traces/{'ab' * 16}").json()["missing"] == ["zipkin", "victorialogs"]


def test_unknown_parameters_are_refused_on_every_route(client: TestClient) -> None:
    for path in ("/v1/system/overview", "/v1/logs", f"/v1/traces/{'ab' * 16}", "/v1/system/dashboards"):
        response = client.get(path, params={"colour": "blue"})
        assert response.status_code == 422, path
        assert response.json()["errors"] == [
            {"location": "query.colour", "message": response.json()["errors"][0]["message"]}
        ]


def test_a_dashboard_range_out_of_bounds_is_named(client: TestClient) -> None:
    response = client.get("/v1/system/dashboards/overview/data", params={"range": "30d"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "query.range"
    assert client.get("/v1/system/dashboards/nope/data").status_code == 404


def test_the_alert_webhook_wants_the_token_as_a_bearer() -> None:
    settings = MonitorSettings(APP_API_TOKEN="a-real-token-for-this-test")
    body = {"version": "4", "status": "firing", "alerts": []}
    with TestClient(create_app(settings)) as client:
        assert client.post("/alerts/webhook", json=body).status_code == 401
        assert client.post("/alerts/webhook", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = client.post(
            "/alerts/webhook", json=body, headers={"Authorization": "Bearer a-real-token-for-this-test"}
        )
        assert answer.json() == {"published": 0}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        # W3C Trace Context: an all-zero trace id is invalid (Zipkin refused it: was a 500).
        (f"/v1/traces/{'0' * 32}", "path.trace_id"),
        (f"/v1/traces/{'0' * 16}", "path.trace_id"),
        # A range further back than a date can count (was an OverflowError: a 500).
        ("/v1/system/dashboards/overview/data?range=99999999999d", "query.range"),
        ("/v1/logs?since=99999999999999h", "query.since"),
    ],
)
def test_out_of_range_inputs_are_422_naming_the_field(client: TestClient, path: str, field: str) -> None:
    response = client.get(path)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in {error["location"] for error in response.json()["errors"]}
