"""Service-to-service authorization through real sidecars: mTLS identities from a real sentry and
each callee's accessControl policy (dapr-config/access/<app>.yaml).

The registry runs with its sidecar; callers are bare sidecars under the app ids the policy names.
inference may only read the registry (it never promotes), training may register, anyone else is
refused. A refusal is daprd's own 403, before the registry app sees the request. Every sidecar
here runs as the harness starts them all, and as `make up` does: mTLS and the policies are the
default, nothing is switched on for this test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness import PROFILES, RESILIENCY_DIR, AppWithSidecar, Daprd


@pytest.fixture
def caller(log_dir: Path, secrets: dict[str, str]) -> Iterator[Callable[[str], httpx.Client]]:
    started: list[Daprd] = []

    def start(app_id: str) -> httpx.Client:
        daprd = Daprd(
            app_id=app_id,
            resources=[PROFILES["default"], RESILIENCY_DIR],
            log_dir=log_dir,
            dapr_api_token=secrets["dapr-api-token"],
        )
        started.append(daprd.start())
        daprd.wait_ready()
        return daprd.client()

    yield start
    for daprd in started:
        assert daprd.process is not None
        daprd.process.stop()


def _refused(response: httpx.Response, caller: str) -> bool:
    body = response.json()
    return (
        response.status_code == 403
        and "access control policy has denied access" in body.get("message", "")
        and f"spiffe://public/ns/default/{caller}" in body["message"]
    )


def test_the_registrys_sidecar_lets_each_caller_do_only_what_its_policy_says(
    default_broker, log_dir: Path, secrets: dict[str, str], caller
) -> None:
    registry = AppWithSidecar.build("registry", log_dir, secrets)
    try:
        registry.start()
        registry.wait_ready()
        _check_policies(caller)
    finally:
        registry.stop()


def _check_policies(caller: Callable[[str], httpx.Client]) -> None:
    """What each caller's identity may do on the running registry."""
    inference = caller("inference")
    # Reading is allowed: the registry app itself answers (no such model: its 404 problem).
    read = inference.get("/v1.0/invoke/registry/method/v1/models/no-such-model")
    assert read.status_code == 404 and read.headers["content-type"].startswith("application/problem+json")
    # Promoting is not: inference's identity may not PUT an alias, nor create a model.
    promote = inference.put(
        "/v1.0/invoke/registry/method/v1/models/no-such-model/aliases/production", json={"version": 1}
    )
    assert _refused(promote, "inference"), promote.text
    assert _refused(inference.post("/v1.0/invoke/registry/method/v1/models", json={}), "inference")

    # training may register: its request reaches the app, which refuses the empty body itself.
    training = caller("training")
    register = training.post("/v1.0/invoke/registry/method/v1/models", json={})
    assert register.status_code == 422, register.text
    # ... and read a version below it (the workflow checks its base model): the app's own 404.
    version = training.get("/v1.0/invoke/registry/method/v1/models/no-such-model/versions/production")
    assert version.status_code == 404 and version.headers["content-type"].startswith("application/problem+json")

    # An app id no policy names is refused everything.
    stranger = caller("intruder")
    assert _refused(stranger.get("/v1.0/invoke/registry/method/v1/models"), "intruder")
