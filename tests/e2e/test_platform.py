"""The whole platform, started the way a user starts it (`dapr run -f .` via scripts/run-platform.sh)."""

import httpx

from harness import SERVICES, ManagedProcess, wait_until


def test_every_app_is_ready_behind_the_gateway(platform: ManagedProcess, secrets: dict[str, str]) -> None:
    api_key = secrets["gateway-api-keys"].split(",")[0]

    def all_ready() -> dict | None:
        response = httpx.get(
            "http://127.0.0.1:8080/v1/system/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        body = response.json()
        return body if response.status_code == 200 and body["status"] == "ready" else None

    body = wait_until(all_ready, what="every app to be ready", timeout=240, interval=1.0, watch=[platform])
    assert set(body["apps"]) == SERVICES
    assert all(entry["ready"] for entry in body["apps"].values())
