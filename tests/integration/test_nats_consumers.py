"""The nats-postgres profile started twice over the same NATS server still delivers (issue 16).

`make up PROFILE=nats-postgres` once never indexed a document: the apps' durable consumers
(named after their app-ids) had been left on the server by an earlier run with other settings
(the broker-restart test's 10 s `ackWait`), and nats.go inside daprd refuses to subscribe
through a consumer whose settings differ ("consumer name already in use"), retrying forever.
`scripts/infra.sh start nats` now brings those consumers back to the component's settings
(scripts/nats_streams.py). Here the knowledge pipeline runs, stops, its consumers are changed on
the server as such a run leaves them, the server is "started" again, and a second run of the
same sidecars must subscribe and index a new document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import uuid

import nats
from knowledge_stack import start_knowledge

from harness import RESILIENCY_DIR, ROOT, load_profile

PROFILE = "nats-postgres"
# (stream, durable consumer) of the pipeline: ingestion reads documents.submit, features
# documents.ingested.
CONSUMERS = [("documents_submit", "ingestion"), ("documents_ingested", "features")]


def infra(*args: str) -> str:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), *args], capture_output=True, text=True)
    assert result.returncode == 0, f"infra.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def _consumers(secrets: dict[str, str], ack_wait: float | None = None) -> dict[str, float]:
    """The pipeline's consumers' ackWait (s); given `ack_wait`, first set it on the server."""
    client = await nats.connect("nats://127.0.0.1:4222", token=secrets["nats-password"], allow_reconnect=False)
    try:
        jetstream = client.jetstream()
        found = {}
        for stream, name in CONSUMERS:
            info = await jetstream.consumer_info(stream, name)
            if ack_wait is not None:
                info.config = dataclasses.replace(info.config, ack_wait=ack_wait)
                info = await jetstream.add_consumer(stream, info.config)
            found[name] = info.config.ack_wait
        return found
    finally:
        await client.close()


def ingest_and_find(log_dir, secrets) -> None:
    """Start ingestion and features on the profile, post a document, wait until it is searchable."""
    knowledge = start_knowledge(log_dir, secrets, resources=[load_profile(PROFILE).folder, RESILIENCY_DIR])
    try:
        marker = "nc" + uuid.uuid4().hex[:12]
        posted = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": f"A note about {marker}."})
        assert posted.status_code in (200, 201), posted.text
        knowledge.wait_searchable(marker, posted.json()["id"], timeout=90)
        for pair in (knowledge.features, knowledge.ingestion):
            assert pair.sidecar.process is not None
            assert "consumer name already in use" not in pair.sidecar.process.log_tail(2000)
    finally:
        knowledge.stop()


def test_a_second_start_over_consumers_left_with_other_settings_still_indexes(log_dir, secrets) -> None:
    infra("start", f"profile:{load_profile(PROFILE).folder}")
    ingest_and_find(log_dir, secrets)  # creates (or reuses) the apps' durable consumers

    # What a run with other windows leaves behind: the same consumers, another ackWait.
    assert set(asyncio.run(_consumers(secrets, ack_wait=10.0)).values()) == {10.0}
    # `make up` starts the servers (NATS already runs: its consumers are reconciled), then the apps.
    output = infra("start", "nats")
    assert "nats: already running" in output
    assert set(asyncio.run(_consumers(secrets)).values()) == {180.0}  # components/profiles/nats-postgres: ackWait

    ingest_and_find(log_dir, secrets)
