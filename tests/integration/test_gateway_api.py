"""The gateway's public API through real sidecars: API keys, request ids, limits, relaying."""

import httpx

from harness import bearer, wait_until


def test_a_public_route_is_relayed_to_its_app_through_dapr(start_app, default_broker, secrets) -> None:
    monitor = start_app("monitor")
    gateway = start_app("gateway")
    monitor.wait_ready()
    gateway.wait_ready()
    with monitor.sidecar.client() as dapr:
        dapr.post("/v1.0/publish/pubsub/prompt.updated", json={"name": "greeting", "version": 2})

    def relayed() -> list | None:
        response = httpx.get(
            f"{gateway.app.url}/v1/events", params={"topic": "prompt.updated"}, headers=bearer(secrets), timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    events = wait_until(relayed, what="the event through the gateway", watch=gateway.processes + monitor.processes)
    assert events[0]["data"] == {"name": "greeting", "version": 2}
    assert httpx.get(f"{gateway.app.url}/v1/events").status_code == 401


def test_an_app_that_is_not_running_is_a_503_problem(start_app, default_broker, secrets) -> None:
    gateway = start_app("gateway")
    gateway.wait_ready()
    response = httpx.get(f"{gateway.app.url}/v1/documents", headers={**bearer(secrets), "X-Request-Id": "r-1"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "r-1"
    assert "ERR_" not in response.text and "dapr" not in response.text.lower()


def test_over_the_rate_limit_is_a_429_with_retry_after(start_app, default_broker, secrets) -> None:
    gateway = start_app("gateway", env={"GATEWAY_REQUESTS_PER_MINUTE": "2"})
    gateway.wait_ready()
    codes = [
        httpx.get(f"{gateway.app.url}/v1/events", headers=bearer(secrets), timeout=10).status_code for _ in range(3)
    ]
    assert codes[2] == 429, codes
    refused = httpx.get(f"{gateway.app.url}/v1/events", headers=bearer(secrets), timeout=10)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"
