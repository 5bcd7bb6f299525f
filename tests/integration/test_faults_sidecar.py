"""SIGTERM to a subscriber's sidecar while messages are in flight: daprd shuts down gracefully (its
in-flight deliveries finish, what it had fetched but not delivered stays unacknowledged in the
broker), and after a restart of the sidecar alone every message reaches the app.

The subscriber is a test double (slow_subscriber.py, 0.5 s per message) under the monitor's
app-id; the broker is the default profile's Redis with a 10 s redelivery window instead of 180 s
(components/pubsub.yaml), so a message left pending comes back within the test.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import httpx
import pytest
from faults import components_copy, redis_cli

from harness import RESILIENCY_DIR, start_pair, wait_until

MESSAGES = 60


@pytest.fixture(scope="module")
def fast_redelivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("components-fast-redelivery")
    return components_copy(folder, {"pubsub.yaml": {"processingTimeout": "10s", "redeliverInterval": "2000"}})


def test_sigterm_to_a_subscribers_sidecar_loses_no_message_in_flight(
    default_broker, log_dir, secrets, fast_redelivery: Path
) -> None:
    topic = f"faults.inflight.{uuid.uuid4().hex[:8]}"
    pair = start_pair(
        "monitor",
        log_dir,
        secrets,
        ready=False,
        resources=[fast_redelivery, RESILIENCY_DIR],
        module="slow_subscriber",
        env={"SUBSCRIBER_TOPIC": topic, "SUBSCRIBER_DELAY": "0.5"},
    )
    try:
        daprd = pair.sidecar
        app = httpx.Client(base_url=pair.app.url, headers={"dapr-api-token": daprd.app_api_token or ""}, timeout=10)
        markers = [f"m{number:03d}" for number in range(MESSAGES)]
        with daprd.client() as dapr:
            for marker in markers:
                published = dapr.post(f"/v1.0/publish/pubsub/{topic}", json={"marker": marker})
                assert published.status_code == 204, published.text

        wait_until(lambda: len(app.get("/received").json()) >= 3, what="deliveries under way", watch=pair.processes)
        assert daprd.process is not None and daprd.process.popen is not None
        daprd.process.signal(signal.SIGTERM)
        assert daprd.process.popen.wait(30) == 0, daprd.process.log_tail()  # a clean, graceful exit
        before_restart = app.get("/received").json()
        assert len(before_restart) < MESSAGES, "every message was handled before the SIGTERM: nothing was in flight"

        daprd.start()
        daprd.wait_ready(60, watch=[p for p in [pair.app.process] if p])
        handled = wait_until(
            lambda: (seen := app.get("/received").json()) and set(markers) <= set(seen) and seen,
            what="every message handled after the restart",
            timeout=90,
            interval=0.5,
            watch=pair.processes,
        )
        assert set(handled) == set(markers)  # nothing lost, nothing foreign
        app.close()
    finally:
        pair.stop()
        redis_cli("DEL", topic)
