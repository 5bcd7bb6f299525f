"""Ask the gateway about a fact only an ingested document holds: the answer cites that document,
and PII in the model's answer reaches the client redacted, whole or streamed.

Every app runs beside a real daprd with the real models; the gateway reaches them only through
Dapr service invocation. The official `openai` client is the caller, unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from harness import INGESTION_DAPRD_ARGS, AppWithSidecar, start_pair, wait_until

APPS = ("guard", "prompts", "monitor", "features", "inference", "gateway")
EMAIL = "orbit-desk@kestrel-launch.example"
FACT = (
    "Kestrel Launch Systems handbook. The launch code word for the Kestrel-7 mission is MARIGOLD-PELICAN. "
    f"Questions about the mission go to the launch desk at {EMAIL}."
)


@pytest.fixture(scope="module")
def stack(default_broker, log_dir: Path, secrets: dict[str, str]) -> Iterator[dict[str, AppWithSidecar]]:
    started: dict[str, AppWithSidecar] = {}
    try:
        started["ingestion"] = start_pair("ingestion", log_dir, secrets, extra_args=INGESTION_DAPRD_ARGS)
        for app_id in APPS:
            started[app_id] = start_pair(app_id, log_dir, secrets, timeout=300)
        yield started
    finally:
        for pair in reversed(started.values()):
            pair.stop()


@pytest.fixture(scope="module")
def document(stack: dict[str, AppWithSidecar]) -> dict:
    collection = f"kestrel-{uuid.uuid4().hex[:8]}"
    with stack["ingestion"].sidecar.client() as dapr:
        created = dapr.post(
            "/v1.0/invoke/ingestion/method/v1/documents",
            # The collection name makes the text new: ingestion deduplicates by content.
            json={"text": f"{FACT} (Edition {collection}.)", "title": "Kestrel handbook", "collection": collection},
            timeout=60,
        )
        assert created.status_code in (200, 201), created.text
        document_id = created.json()["id"]

        def indexed() -> bool:
            found = dapr.post(
                "/v1.0/invoke/features/method/v1/search",
                json={"query": "MARIGOLD-PELICAN", "collection": collection, "mode": "keyword"},
            )
            return any(hit["document_id"] == document_id for hit in found.json()["results"])

        wait_until(indexed, what="the handbook indexed", timeout=120)
    return {"id": document_id, "collection": collection}


def gateway_client(stack, secrets) -> OpenAI:
    return OpenAI(
        base_url=f"{stack['gateway'].app.url}/v1",
        api_key=secrets["gateway-api-keys"].split(",")[0],
        max_retries=0,
        timeout=300,
    )


def test_the_answer_cites_the_document_that_holds_the_fact(stack, document, secrets) -> None:
    answer = gateway_client(stack, secrets).chat.completions.create(
        model=f"rag/{document['collection']}",
        messages=[{"role": "user", "content": "What is the launch code word for the Kestrel-7 mission?"}],
        max_tokens=24,
        temperature=0,
    )
    extra = answer.model_extra or {}
    assert document["id"] in [c["document_id"] for c in extra["citations"]]
    assert extra["citations"][0]["title"] == "Kestrel handbook"
    assert extra["lineage"]["collection"] == document["collection"]
    assert extra["lineage"]["prompt"]["name"]
    assert len(extra["lineage"]["trace_id"]) == 32
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    assert answer.choices[0].message.content


def violations(stack) -> list[dict]:
    with stack["monitor"].sidecar.client() as dapr:
        events = dapr.get("/v1.0/invoke/monitor/method/v1/events", params={"topic": "guard.violation"}).json()
    return [e["data"] for e in events if e["data"].get("direction") == "output"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_pii_in_the_answer_reaches_the_client_redacted(stack, document, secrets, stream: bool) -> None:
    before = len(violations(stack))
    request = {
        "model": f"rag/{document['collection']}",
        "messages": [{"role": "user", "content": "Where do questions about the mission go?"}],
        "max_tokens": 40,
        "temperature": 0,
    }
    openai = gateway_client(stack, secrets)
    if stream:
        chunks = list(openai.chat.completions.create(**request, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert any((c.model_extra or {}).get("citations") for c in chunks)
    else:
        text = openai.chat.completions.create(**request).choices[0].message.content or ""
    assert EMAIL not in text
    # The output rail saw PII in this answer (the model did repeat the address) and redacted it.
    found = wait_until(
        lambda: violations(stack)[before:] or None,
        what=f"the output guard.violation (answer was {text!r})",
        timeout=30,
    )
    assert any(rail.get("rail") == "pii" for event in found for rail in event["rails"]), json.dumps(found)


def test_no_key_is_a_401_and_the_pipeline_is_not_reached(stack, secrets) -> None:
    response = httpx.post(
        f"{stack['gateway'].app.url}/v1/chat/completions",
        json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 401
