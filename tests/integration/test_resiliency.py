"""The Resiliency in dapr-config/resiliency/ retries a transient 503 from an app, and not a 4xx."""

import uuid
from pathlib import Path

import yaml

from harness import ROOT

# The flaky double stands in for the `ui` app's process; daprd and the Resiliency are real.
TARGET = "ui"


def invocation_retries(app_id: str) -> int:
    spec = yaml.safe_load(Path(ROOT / "dapr-config" / "resiliency" / "resiliency.yaml").read_text())["spec"]
    policy = spec["targets"]["apps"][app_id]["retry"]
    return int(spec["policies"]["retries"][policy]["maxRetries"])


def test_a_transient_503_is_retried_until_the_app_recovers(start_app, default_broker) -> None:
    flaky = start_app(TARGET, module="flaky_app")
    caller = start_app("gateway")
    failures = invocation_retries(TARGET)  # the last allowed retry is the one that succeeds
    key = uuid.uuid4().hex
    with caller.sidecar.client() as dapr:
        response = dapr.post(f"/v1.0/invoke/{TARGET}/method/flaky/{key}/{failures}")
    assert response.status_code == 200, response.text
    assert response.json() == {"attempt": failures + 1}
    assert flaky.app.process is not None and flaky.app.process.alive


def test_retries_stop_at_the_policy_limit(start_app, default_broker) -> None:
    start_app(TARGET, module="flaky_app")
    caller = start_app("gateway")
    retries = invocation_retries(TARGET)
    key = uuid.uuid4().hex
    with caller.sidecar.client() as dapr:
        response = dapr.post(f"/v1.0/invoke/{TARGET}/method/flaky/{key}/{retries + 5}")
        assert response.status_code == 503
        assert response.json() == {"attempt": 1 + retries}
