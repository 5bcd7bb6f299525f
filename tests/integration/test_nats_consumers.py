"""The nats-postgres profile started twice over the same NATS server still delivers (issue 16).

`make up PROFILE=nats-postgres` once never indexed a document: the apps' durable consumers
(named after their app-ids) had been left on the server by an earlier run with other settings
(the broker-restart test's 10 s `ackWait`), and nats.go inside daprd refuses to subscribe
through a consumer whose settings differ ("consumer name already in use"), retrying forever.
`scripts/infra.sh start nats` now brings those consumers back to the component's settings
(scripts/nats_streams.py). Here the knowledge pipeline runs, its sidecars stop, its consumers are
changed on the server as such a run leaves them, the server is "started" again, and the sidecars
started a second time must subscribe and index a new document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import uuid

import nats
from knowledge_stack import Knowledge, start_knowledge

from harness import RESILIENCY_DIR, ROOT, load_profile, wait_until

PROFILE = "nats-postgres"
# (stream, durable consumer) of the pipeline: ingestion reads documents.submit, features
# documents.ingested.
CONSUMERS = [("documents_submit", "ingestion"), ("documents_ingested", "features")]


def infra(*args: str) -> str:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), *args], capture_output=True, text=True)
    assert result.returncode == 0, f"infra.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def _consumers(secrets: dict[str, str], ack_wait: float | None = None) -> set[float]:
    """The pipeline's consumers' ackWait values (s), read from the server; given `ack_wait`,
    first set it on each. (nats-server 2.9.10's answer to the update can still show the old
    value: only a fresh read counts.)"""
    client = await nats.connect("nats://127.0.0.1:4222", token=secrets["nats-password"], allow_reconnect=False)
    try:
        jetstream = client.jetstream()
        if ack_wait is not None:
            for stream, name in CONSUMERS:
                info = await jetstream.consumer_info(stream, name)
                await jetstream.add_consumer(stream, dataclasses.replace(info.config, ack_wait=ack_wait))
        return {(await jetstream.consumer_info(stream, name)).config.ack_wait for stream, name in CONSUMERS}
    finally:
        await client.close()


def ingest_and_find(knowledge: Knowledge) -> None:
    """Post a document to ingestion and wait until features has indexed it (it is searchable)."""
    marker = "nc" + uuid.uuid4().hex[:12]
    posted = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": f"A note about {marker}."})
    assert posted.status_code in (200, 201), posted.text
    knowledge.wait_searchable(marker, posted.json()["id"], timeout=90)
    for pair in (knowledge.features, knowledge.ingestion):
        assert pair.sidecar.process is not None
        assert "consumer name already in use" not in pair.sidecar.process.log_tail(2000)


def test_a_second_start_over_consumers_left_with_other_settings_still_indexes(log_dir, secrets) -> None:
    infra("start", f"profile:{load_profile(PROFILE).folder}")
    knowledge = start_knowledge(log_dir, secrets, resources=[load_profile(PROFILE).folder, RESILIENCY_DIR])
    try:
        ingest_and_find(knowledge)  # the sidecars create (or reuse) the apps' durable consumers
        for pair in (knowledge.features, knowledge.ingestion):
            assert pair.sidecar.process is not None
            pair.sidecar.process.stop()

        # What a run with other windows leaves behind: the same consumers, another ackWait.
        asyncio.run(_consumers(secrets, ack_wait=10.0))
        wait_until(lambda: asyncio.run(_consumers(secrets)) == {10.0}, what="the consumers' ackWait at 10 s")
        # `make up` starts the servers (NATS already runs: its consumers are reconciled), then the
        # sidecars, which subscribe anew (the apps' processes stay: the consumer is the sidecar's).
        output = infra("start", "nats")
        assert "nats: already running" in output
        wait_until(lambda: asyncio.run(_consumers(secrets)) == {180.0}, what="the profile's ackWait again", timeout=10)
        for pair in (knowledge.features, knowledge.ingestion):
            assert pair.app.process is not None
            pair.sidecar.start().wait_ready(120, watch=[pair.app.process])

        ingest_and_find(knowledge)
    finally:
        knowledge.stop()
