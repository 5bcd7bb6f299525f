"""Fixtures of the integration tests that several modules share (the session-wide ones, brokers,
secrets and `start_app`, are in tests/conftest.py)."""

from __future__ import annotations

import httpx
import pytest

from harness import AppWithSidecar, wait_until


@pytest.fixture
def generation_stack(start_app, default_broker, secrets) -> dict[str, AppWithSidecar]:
    """The guard, inference and the gateway beside real sidecars, by app id, once inference answers
    through the gateway's sidecar: ready can come a moment before the first model version is
    promoted to serve, and before the gateway's sidecar reaches inference's, so this polls the path
    a chat takes. Everything is stopped after the test (`start_app`)."""
    apps = {app_id: start_app(app_id, default_broker) for app_id in ("guard", "inference", "gateway")}
    for app in apps.values():
        app.wait_ready()
    through_dapr = f"{apps['gateway'].sidecar.url}/v1.0/invoke/inference/method/v1/chat/completions"
    ask = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    token = {"dapr-api-token": secrets["dapr-api-token"]}
    wait_until(
        lambda: httpx.post(through_dapr, json=ask, headers=token, timeout=30).is_success,
        what="inference to answer through the gateway's sidecar",
        timeout=120,
    )
    return apps
