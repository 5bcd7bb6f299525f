"""Each profile's broker through real processes: restarted while documents are ingested, and a
subscriber that arrives after the events (components/profiles/README.md states what it gets).

Both tests run on every profile (`--profile` picks some) and read what they need from the
profile's profile.yaml: which server is the broker (`broker`), and what a late subscriber gets
(`late_subscriber`).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from knowledge_stack import Knowledge, start_knowledge

from harness import RESILIENCY_DIR, ROOT, AppWithSidecar, Daprd, load_profile, wait_until

DOCUMENTS = 40
# Redelivery windows of the profiles' pub/sub components (180 s, for handlers that are slow but
# alive), shortened here: an acknowledgement lost with the broker's connection leaves a message
# pending until its window ends. RabbitMQ needs none: a closed channel requeues at once.
SHORT_WINDOWS = {"processingTimeout": "10s", "redeliverInterval": "2000", "ackWait": "10s"}
# A JetStream durable consumer keeps the settings it was made with, and daprd refuses to subscribe
# through one whose settings differ from its component's: with other windows, other consumers, so
# this copy never leaves the apps' own (`{appID}`, used by `make up`) with a 10 s ackWait.
OWN_CONSUMERS = {"durableName": "{appID}-short-windows", "queueGroupName": "{appID}-short-windows"}


def infra(*args: str) -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), *args], capture_output=True, text=True)
    assert result.returncode == 0, f"infra.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def components_copy(profile: str, folder: Path, *, extra_scope: str | None = None) -> Path:
    """The profile's components in `folder`, with short redelivery windows and, given
    `extra_scope`, one more app-id in every component's scopes."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in load_profile(profile).folder.glob("*.yaml"):
        documents = [d for d in yaml.safe_load_all(source.read_text()) if d]
        for document in documents:
            for item in document.get("spec", {}).get("metadata", []) if document.get("kind") == "Component" else []:
                if item["name"] in SHORT_WINDOWS:
                    item["value"] = SHORT_WINDOWS[item["name"]]
                if item["name"] in OWN_CONSUMERS:
                    item["value"] = OWN_CONSUMERS[item["name"]]
            if extra_scope and "scopes" in document:
                document["scopes"].append(extra_scope)
        (folder / source.name).write_text(yaml.safe_dump_all(documents))
    return folder


# ---------------------------------------------------------------------------- broker restart


@pytest.fixture
def knowledge(profile, log_dir, secrets, tmp_path: Path) -> Iterator[Knowledge]:
    components = components_copy(profile, (tmp_path / "components").resolve())
    stack = start_knowledge(
        log_dir, secrets, resources=[components, RESILIENCY_DIR], ingestion_env={"INGESTION_INBOX": str(tmp_path)}
    )
    yield stack
    stack.stop()


def post_until_stored(knowledge: Knowledge, text: str, collection: str, timeout: float = 120.0) -> str:
    """POST a document, again after each 503 (the broker or store is down) as its Retry-After
    asks; returns the document's id. The same content is the same document, so a repeat after a
    reply lost in the outage cannot store it twice."""
    url = f"{knowledge.ingestion.app.url}/v1/documents"
    headers = {"dapr-api-token": knowledge.ingestion.sidecar.app_api_token}
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(url, json={"text": text, "collection": collection}, headers=headers, timeout=60)
        except httpx.TimeoutException:
            response = None
        if response is not None and response.status_code in (200, 201):
            return response.json()["id"]
        if response is not None:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
        assert time.monotonic() < deadline, f"not stored after {timeout:.0f}s: {response and response.text}"
        time.sleep(float(response.headers.get("retry-after", "1")) if response is not None else 1.0)


def test_broker_restarted_while_ingesting_loses_and_duplicates_nothing(profile, knowledge: Knowledge) -> None:
    """Posts that meet the outage get a 503 problem with Retry-After and are repeated; afterwards
    every document is indexed once. The subscriber's sidecar keeps running, unless the profile
    declares `after_broker_restart: restart-sidecar` (then it is restarted, its app not)."""
    broker, after_restart = load_profile(profile).broker, load_profile(profile).after_broker_restart
    collection = f"restart-{uuid.uuid4().hex[:6]}"
    markers = ["zr" + uuid.uuid4().hex[:12] for _ in range(DOCUMENTS)]

    def post(marker: str) -> tuple[str, str]:
        return marker, post_until_stored(knowledge, f"Restart test document about {marker}. One line.", collection)

    with ThreadPoolExecutor(4) as pool:
        posted = [pool.submit(post, marker) for marker in markers]
        # Half-way through, while the other posts are in flight: the broker stops and starts
        # again (infra.sh waits for each; the apps and sidecars keep running).
        wait_until(lambda: sum(f.done() for f in posted) >= DOCUMENTS // 2, what="half the documents stored")
        infra("stop", broker)
        infra("start", broker)
        documents = dict(f.result() for f in posted)
    if after_restart == "restart-sidecar":
        assert knowledge.features.sidecar.process is not None
        knowledge.features.sidecar.process.stop()
        knowledge.features.sidecar.start().wait_ready(120, watch=[p for p in [knowledge.features.app.process] if p])
    else:
        assert after_restart == "resumes", f"{profile}: after_broker_restart must be resumes or restart-sidecar"

    def indexed(doc_id: str) -> list[str]:
        response = knowledge.invoke("features", "GET", f"v1/index/documents/{doc_id}")
        return response.json()["chunk_ids"] if response.status_code == 200 else []

    wait_until(
        lambda: all(indexed(doc_id) for doc_id in documents.values()),
        what=f"every document indexed after the {broker} restart",
        timeout=180,
        interval=1.0,
        watch=knowledge.processes,
    )
    for marker, doc_id in documents.items():
        assert indexed(doc_id) == [f"{doc_id}:0"]
        hits = knowledge.search(marker, mode="keyword", k=10, collection=collection)
        assert [hit["document_id"] for hit in hits] == [doc_id], marker
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: knowledge.invoke("ingestion", "DELETE", f"v1/documents/{i}"), documents.values()))


# ---------------------------------------------------------------------------- late subscriber


def events(app: AppWithSidecar, marker_topic: str = "model.promoted") -> list[dict]:
    with app.sidecar.client() as dapr:
        response = dapr.get(f"/v1.0/invoke/{app.app.app_id}/method/v1/events?topic={marker_topic}&limit=1000")
    response.raise_for_status()
    return response.json()


def test_a_late_subscriber_gets_what_the_profile_says(profile, log_dir, secrets, tmp_path: Path) -> None:
    """An app that subscribes for the first time after an event was published gets it when the
    profile's late_subscriber is `history`, and not when it is `new`; an event published after
    it subscribed arrives in both cases (so the check cannot pass on a subscriber that hears nothing)."""
    late = load_profile(profile).late_subscriber
    app_id = f"late-{uuid.uuid4().hex[:8]}"  # a consumer (group, queue, durable) the broker never saw
    components = components_copy(profile, (tmp_path / "components").resolve(), extra_scope=app_id)
    resources = [components, RESILIENCY_DIR]
    # The publisher: a sidecar alone, with the id of the app that publishes model.promoted.
    publisher = Daprd(
        app_id="registry",
        resources=resources,
        log_dir=log_dir,
        dapr_api_token=secrets["dapr-api-token"],
        app_api_token=secrets["app-api-token"],
    ).start()
    subscriber = None
    try:
        publisher.wait_ready()
        before, after = f"before-{uuid.uuid4()}", f"after-{uuid.uuid4()}"
        with publisher.client() as dapr:
            published = dapr.post("/v1.0/publish/pubsub/model.promoted", json={"model": "late", "marker": before})
        assert published.status_code == 204, published.text  # the broker has it (confirms, acks, XADD)

        subscriber = AppWithSidecar.build(app_id, log_dir, secrets, resources=resources, module="monitor").start()
        subscriber.wait_ready()
        with publisher.client() as dapr:
            published = dapr.post("/v1.0/publish/pubsub/model.promoted", json={"model": "late", "marker": after})
        assert published.status_code == 204, published.text

        def markers() -> set[str]:
            return {e["data"].get("marker") for e in events(subscriber) if isinstance(e["data"], dict)}

        # One queue, stream or consumer per topic delivers in publishing order: once the later
        # event is in, the earlier one has come before it or never will.
        wait_until(lambda: after in markers(), what="the later event", timeout=60, watch=subscriber.processes)
        if late == "history":
            wait_until(lambda: before in markers(), what="the earlier event", timeout=30, watch=subscriber.processes)
        else:
            assert late == "new", f"{profile}: late_subscriber must be history or new, not {late!r}"
            assert before not in markers()
    finally:
        if subscriber is not None:
            subscriber.stop()
        assert publisher.process is not None
        publisher.process.stop()
