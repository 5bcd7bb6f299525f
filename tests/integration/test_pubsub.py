"""Pub/sub through real sidecars and brokers: CloudEvents delivered, poison messages dead-lettered."""

import uuid
from pathlib import Path

import yaml

from harness import ROOT, wait_until


def inbound_retries() -> int:
    """How many times the resiliency policy retries a delivery to a subscriber."""
    resiliency = yaml.safe_load(Path(ROOT / "dapr-config" / "resiliency" / "resiliency.yaml").read_text())
    spec = resiliency["spec"]
    policy = spec["targets"]["components"]["pubsub"]["inbound"]["retry"]
    return int(spec["policies"]["retries"][policy]["maxRetries"])


# Earlier tests leave events in the monitor's consumer group; a new monitor receives that backlog
# too, so look where the marker must be rather than at the newest 100 of everything.
MODEL_PROMOTED = "events?topic=model.promoted&limit=1000"


def events(monitor, path: str) -> list[dict]:
    with monitor.sidecar.client() as dapr:
        response = dapr.get(f"/v1.0/invoke/monitor/method/v1/{path}")
    response.raise_for_status()
    return response.json()


def test_published_event_arrives_as_a_cloud_event(start_app, profile) -> None:
    monitor = start_app("monitor", profile)
    monitor.wait_ready()
    marker = str(uuid.uuid4())
    with monitor.sidecar.client() as dapr:
        published = dapr.post("/v1.0/publish/pubsub/model.promoted", json={"model": "smollm2", "marker": marker})
    assert published.status_code == 204, published.text

    def delivered() -> dict | None:
        return next((e for e in events(monitor, MODEL_PROMOTED) if e["data"].get("marker") == marker), None)

    event = wait_until(delivered, what="the event to reach the monitor", watch=monitor.processes)
    assert event["topic"] == "model.promoted"
    assert event["type"] == "com.dapr.event.sent"
    assert event["source"] == "monitor"
    assert uuid.UUID(event["id"])  # Dapr gives every CloudEvent a unique id


def test_poison_message_ends_in_the_dead_letter_topic_after_the_retries(start_app, profile) -> None:
    monitor = start_app("monitor", profile)
    monitor.wait_ready()
    marker = f"poison-{uuid.uuid4()}"
    with monitor.sidecar.client() as dapr:
        published = dapr.post("/v1.0/publish/pubsub/model.promoted", json=marker)
    assert published.status_code == 204, published.text

    def dead_lettered() -> dict | None:
        return next((e for e in events(monitor, "dead-letters?limit=1000") if e["data"] == marker), None)

    letter = wait_until(
        dead_lettered, what="the poison message in the dead-letter topic", timeout=90, watch=monitor.processes
    )
    assert letter["attempts"] == 1 + inbound_retries()
    assert all(e["data"] != marker for e in events(monitor, MODEL_PROMOTED))
