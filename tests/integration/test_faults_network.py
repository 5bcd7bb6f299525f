"""A network cut between a sidecar and the broker and store, made with a real fault proxy.

Toxiproxy (built by `make setup`, scripts/build-toxiproxy.sh) sits between the ingestion app's
daprd and Redis: that daprd's state store and pub/sub components point at the proxy's listener.
Disabling the proxy closes every connection and refuses new ones, as a cut link does. For
CUT_SECONDS or more the ingestion API is asked to store documents: each answer is a 503
problem+json with Retry-After (the first ones after daprd's retries, the rest at once), the circuit
breaker of dapr-config/resiliency/resiliency.yaml opens (daprd's `dapr_resiliency_cb_state` metric says
so), and once the link is back it closes again and every document that was refused is stored
when the client tries again. Nothing is lost: each accepted
document's `documents.ingested` event is in the broker's stream.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from faults import REDIS_PORT, components_copy, redis_cli

from harness import (
    INGESTION_DAPRD_ARGS,
    RESILIENCY_DIR,
    RUNTIME,
    AppWithSidecar,
    ManagedProcess,
    free_port,
    start_pair,
    wait_for_status,
    wait_until,
)

log = logging.getLogger(__name__)
TOXIPROXY = RUNTIME / "toxiproxy" / "toxiproxy-server"
# The issue asks for a cut of 10-30 s. Measured: the first two requests of a cut are retried
# within the policy (transient: 6 attempts) and refused after ~12 s and ~8 s, when the breaker
# opens (10 failures in a row); it stays open 15 s at a time (resiliency.yaml).
CUT_SECONDS = 15
MAX_CUT_SECONDS = 30


class Toxiproxy:
    """Toxiproxy's server on loopback, driven through its HTTP API (github.com/Shopify/toxiproxy, API.md)."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10.0)
        self.process = ManagedProcess(
            "toxiproxy",
            [str(TOXIPROXY), "-host", "127.0.0.1", "-port", str(self.port)],
            dict(os.environ),
            log_dir / f"toxiproxy-{self.port}.log",
        ).start()
        wait_for_status(f"http://127.0.0.1:{self.port}/version", 200, "toxiproxy", 30, [self.process])

    def proxy(self, name: str, upstream: str) -> str:
        """Create proxy `name` to `upstream`; returns its listen address (127.0.0.1:<free port>)."""
        listen = f"127.0.0.1:{free_port()}"
        response = self.api.post("/proxies", json={"name": name, "listen": listen, "upstream": upstream})
        assert response.status_code == 201, response.text
        return listen

    def set_enabled(self, name: str, enabled: bool) -> None:
        # Disabled: the listener is closed and every open connection through it is cut.
        response = self.api.post(f"/proxies/{name}", json={"enabled": enabled})
        assert response.status_code == 200, response.text
        assert response.json()["enabled"] is enabled

    def stop(self) -> None:
        self.api.close()
        self.process.stop()


@pytest.fixture(scope="module")
def toxiproxy(log_dir: Path) -> Iterator[Toxiproxy]:
    if not TOXIPROXY.exists():
        pytest.fail(f"{TOXIPROXY} is missing: run `make setup` (scripts/build-toxiproxy.sh)")
    server = Toxiproxy(log_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ingestion(default_broker, toxiproxy: Toxiproxy, log_dir, secrets, tmp_path_factory) -> Iterator[AppWithSidecar]:
    """Ingestion beside a daprd whose Redis state store and pub/sub reach Redis through the proxy."""
    listen = toxiproxy.proxy("redis", f"127.0.0.1:{REDIS_PORT}")
    through_proxy = {"redisHost": listen}
    folder = components_copy(
        tmp_path_factory.mktemp("components-through-toxiproxy"),
        {"statestore.yaml": through_proxy, "pubsub.yaml": through_proxy},
    )
    pair = start_pair(
        "ingestion",
        log_dir,
        secrets,
        resources=[folder, RESILIENCY_DIR],
        env={"INGESTION_INBOX": str(tmp_path_factory.mktemp("cut-inbox"))},  # its cron sweep finds nothing
        extra_args=INGESTION_DAPRD_ARGS,
    )
    yield pair
    toxiproxy.set_enabled("redis", True)
    pair.stop()


def breaker_states(pair: AppWithSidecar, component: str) -> dict[str, float]:
    """daprd's `dapr_resiliency_cb_state` gauges of `component`'s outbound breaker: status -> value.

    Dapr records one gauge per status (closed, half-open, open, unknown), 1 for the current one,
    each time the policy is applied (pkg/diagnostics/resiliency_monitoring.go).
    """
    text = httpx.get(f"http://127.0.0.1:{pair.sidecar.metrics_port}/metrics", timeout=5).text
    states: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("dapr_resiliency_cb_state{"):
            continue
        labels, value = line[len("dapr_resiliency_cb_state{") :].rsplit("} ", 1)
        fields = dict(part.split("=", 1) for part in labels.split(","))
        target = fields.get("target", "").strip('"').lower()
        if fields.get("flow_direction") == '"outbound"' and target.endswith(f"_{component}"):
            states[fields["status"].strip('"')] = float(value)
    return states


def test_a_cut_to_the_broker_and_store_fails_fast_opens_the_breaker_and_loses_nothing(
    ingestion: AppWithSidecar, toxiproxy: Toxiproxy
) -> None:
    url = f"{ingestion.app.url}/v1/documents"
    headers = {"dapr-api-token": ingestion.sidecar.app_api_token or ""}
    run = uuid.uuid4().hex[:10]
    accepted: dict[str, str] = {}  # text -> document id
    refused: list[str] = []
    during_cut: list[tuple[float, bool, httpx.Response]] = []  # seconds, breaker open, answer

    def post(text: str, client: httpx.Client) -> httpx.Response:
        return client.post(url, json={"text": text, "collection": f"cut-{run}"}, headers=headers)

    with httpx.Client(timeout=60) as client:
        for number in range(3):
            text = f"Before the cut {run} document {number}."
            response = post(text, client)
            assert response.status_code == 201, response.text
            accepted[text] = response.json()["id"]

        toxiproxy.set_enabled("redis", False)
        cut_at = time.monotonic()
        number = 0
        refused_while_open = 0
        # At least CUT_SECONDS, and until a few requests met the open breaker (each request
        # records the breaker's state as it starts, so the gauge says what that request met).
        while time.monotonic() - cut_at < CUT_SECONDS or refused_while_open < 3:
            assert time.monotonic() - cut_at < MAX_CUT_SECONDS, f"the breaker did not open in {MAX_CUT_SECONDS} s"
            text = f"During the cut {run} document {number}."
            number += 1
            started = time.monotonic()
            response = post(text, client)
            met_open = breaker_states(ingestion, "statestore").get("open") == 1.0
            during_cut.append((time.monotonic() - started, met_open, response))
            if response.status_code == 201:  # sent just before the cut took hold
                accepted[text] = response.json()["id"]
            else:
                refused.append(text)
                refused_while_open += met_open
        cut_seconds = time.monotonic() - cut_at
        toxiproxy.set_enabled("redis", True)

        # Every answer during the cut: a 503 problem+json the client can act on, never a 500.
        for _, _, response in during_cut:
            assert response.status_code in (201, 503), response.text
            if response.status_code == 503:
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["status"] == 503
                assert int(response.headers["retry-after"]) > 0
        log.info(
            "%d requests refused during a %.0f s cut; seconds each (breaker open as it started): %s",
            len(refused),
            cut_seconds,
            [
                (round(seconds, 2), met_open)
                for seconds, met_open, response in during_cut
                if response.status_code == 503
            ],
        )

        # The client honours Retry-After; every refused document is stored once the link is back.
        for text in refused:

            def stored(text: str = text) -> str | None:
                response = post(text, client)
                if response.status_code == 503:
                    time.sleep(int(response.headers["retry-after"]))
                    return None
                assert response.status_code in (200, 201), response.text
                return response.json()["id"]

            accepted[text] = wait_until(stored, what="the document stored after the cut", timeout=90, interval=0)

    # The breaker is closed again, as daprd's metric shows.
    assert breaker_states(ingestion, "statestore").get("closed") == 1.0, breaker_states(ingestion, "statestore")
    assert breaker_states(ingestion, "pubsub").get("closed") == 1.0, breaker_states(ingestion, "pubsub")

    # Nothing published is lost: each accepted document's event is in the topic's stream.
    events = redis_cli("XREVRANGE", "documents.ingested", "+", "-", "COUNT", "5000")
    missing = [doc_id for doc_id in accepted.values() if doc_id not in events]
    assert missing == [], f"{len(missing)} of {len(accepted)} documents have no event"
