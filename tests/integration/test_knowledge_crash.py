"""Crash test: documents keep flowing while the features app, then its sidecar, is SIGKILLed and
restarted. Afterwards every document is searchable and no chunk is indexed twice.

The broker's redelivery window (`processingTimeout`, 180 s in components/pubsub.yaml) is what a
crashed subscriber waits for; here a copy of the components with a 10 s window keeps the test
short. That also makes redeliveries of slow-but-alive handling likely, which is the point:
handling must be idempotent either way.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from knowledge_stack import Knowledge, start_knowledge

from harness import PROFILES, RESILIENCY_DIR, wait_until

DOCUMENTS = 200

# This test found that Dapr 1.18's Redis Streams component acknowledges a message once the
# sidecar's delivery retries are spent: with a short inbound retry policy, events in flight to a
# SIGKILLed features app were lost (10 of 200). dapr-config/resiliency/resiliency-features.yaml retries
# delivery to features until the processing timeout cancels the attempt, which leaves the
# message pending for redelivery.


@pytest.fixture(scope="module")
def fast_redelivery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("components-fast-redelivery")
    for source in PROFILES["default"].glob("*.yaml"):
        shutil.copy(source, folder / source.name)
    pubsub = yaml.safe_load((folder / "pubsub.yaml").read_text())
    for item in pubsub["spec"]["metadata"]:
        if item["name"] == "processingTimeout":
            item["value"] = "10s"
        if item["name"] == "redeliverInterval":
            item["value"] = "2000"
    (folder / "pubsub.yaml").write_text(yaml.safe_dump(pubsub))
    return folder


@pytest.fixture(scope="module")
def knowledge(default_broker, log_dir, secrets, fast_redelivery, tmp_path_factory) -> Iterator[Knowledge]:
    resources = [fast_redelivery, RESILIENCY_DIR]
    inbox = tmp_path_factory.mktemp("crash-inbox")
    stack = start_knowledge(log_dir, secrets, resources=resources, ingestion_env={"INGESTION_INBOX": str(inbox)})
    yield stack
    stack.stop()


def ingest_while(knowledge: Knowledge, crash: Callable[[], None], collection: str) -> dict[str, str]:
    """Post DOCUMENTS small documents from 4 threads, calling `crash` half-way; marker -> id."""
    markers = ["zc" + uuid.uuid4().hex[:12] for _ in range(DOCUMENTS)]
    url = f"{knowledge.ingestion.app.url}/v1/documents"
    headers = {"dapr-api-token": knowledge.ingestion.sidecar.app_api_token}

    def post(marker: str) -> tuple[str, str]:
        text = f"Crash test document about {marker}. It has one short paragraph only."
        response = httpx.post(url, json={"text": text, "collection": collection}, headers=headers, timeout=60)
        assert response.status_code == 201, response.text
        return marker, response.json()["id"]

    with ThreadPoolExecutor(4) as pool:
        first = list(pool.map(post, markers[: DOCUMENTS // 2]))
        crash()
        rest = list(pool.map(post, markers[DOCUMENTS // 2 :]))
    return dict(first + rest)


def assert_all_indexed_once(knowledge: Knowledge, documents: dict[str, str], collection: str) -> None:
    def indexed(doc_id: str) -> list[str]:
        response = knowledge.invoke("features", "GET", f"v1/index/documents/{doc_id}")
        return response.json()["chunk_ids"] if response.status_code == 200 else []

    def everything_indexed() -> bool:
        return all(indexed(doc_id) for doc_id in documents.values())

    wait_until(everything_indexed, what="every document indexed", timeout=180, interval=1.0, watch=knowledge.processes)
    for marker, doc_id in documents.items():
        assert indexed(doc_id) == [f"{doc_id}:0"]
        hits = knowledge.search(marker, mode="keyword", k=10, collection=collection)
        assert [hit["document_id"] for hit in hits] == [doc_id], marker


def cleanup(knowledge: Knowledge, documents: dict[str, str]) -> None:
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda doc_id: knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}"), documents.values()
            )
        )


def test_features_app_killed_and_restarted_midway(knowledge: Knowledge) -> None:
    collection = f"crash-app-{uuid.uuid4().hex[:6]}"

    def crash() -> None:
        knowledge.features.app.process.kill()
        knowledge.features.app.start()
        knowledge.features.wait_ready(180)

    documents = ingest_while(knowledge, crash, collection)
    assert_all_indexed_once(knowledge, documents, collection)
    cleanup(knowledge, documents)


def test_features_sidecar_killed_and_restarted_midway(knowledge: Knowledge) -> None:
    collection = f"crash-sidecar-{uuid.uuid4().hex[:6]}"

    def crash() -> None:
        knowledge.features.sidecar.process.kill()
        knowledge.features.sidecar.start()
        knowledge.features.sidecar.wait_ready(120)
        knowledge.features.wait_ready(120)

    documents = ingest_while(knowledge, crash, collection)
    assert_all_indexed_once(knowledge, documents, collection)
    cleanup(knowledge, documents)
