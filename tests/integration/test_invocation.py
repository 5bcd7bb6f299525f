"""Service invocation through real sidecars, and the tokens that guard both sides of each."""

import httpx

from harness import wait_until


def test_gateway_reports_each_apps_readiness_through_dapr(start_app, default_broker, secrets) -> None:
    monitor = start_app("monitor")
    gateway = start_app("gateway")
    monitor.wait_ready()
    gateway.wait_ready()
    api_key = secrets["gateway-api-keys"].split(",")[0]

    def health() -> dict:
        response = httpx.get(
            f"{gateway.app.url}/v1/system/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["apps"]["monitor"]["ready"] else None

    body = wait_until(health, what="the gateway to see the monitor ready", watch=monitor.processes + gateway.processes)
    assert body["apps"]["gateway"]["ready"] is True
    # Apps that are not running are reported, not hidden, and the platform is not called ready.
    assert body["apps"]["registry"]["ready"] is False
    assert body["status"] == "degraded"


def test_gateway_refuses_missing_and_wrong_api_keys(start_app, default_broker) -> None:
    gateway = start_app("gateway")
    gateway.wait_ready()
    missing = httpx.get(f"{gateway.app.url}/v1/system/health")
    wrong = httpx.get(f"{gateway.app.url}/v1/system/health", headers={"Authorization": "Bearer gk-wrong"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


def test_app_routes_answer_only_their_sidecar(start_app, default_broker) -> None:
    monitor = start_app("monitor")
    monitor.wait_ready()
    # Straight to the app, without the app token: refused.
    direct = httpx.get(f"{monitor.app.url}/v1/events")
    assert direct.status_code == 401
    assert direct.headers["content-type"] == "application/problem+json"
    # Through its sidecar, which adds the token: served.
    with monitor.sidecar.client() as dapr:
        through_dapr = dapr.get("/v1.0/invoke/monitor/method/v1/events")
    assert through_dapr.status_code == 200
    assert through_dapr.json() == []


def test_sidecar_api_refuses_calls_without_the_dapr_api_token(start_app, default_broker) -> None:
    monitor = start_app("monitor")
    response = httpx.get(f"{monitor.sidecar.url}/v1.0/invoke/monitor/method/v1/events")
    assert response.status_code == 401
    with monitor.sidecar.client() as dapr:
        assert dapr.get("/v1.0/metadata").json()["id"] == "monitor"
