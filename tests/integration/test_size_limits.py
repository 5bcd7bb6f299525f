"""Body and header limits through real sidecars (issue 11 inputs 11 and 20, issue 16): every request
over a limit is a 413 or 431 problem+json naming the limit, answered by the gateway before a sidecar
sees it; a document near ingestion's limit passes every sidecar (their limits are dapr.yaml's)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from genai_platform.contracts.documents import MULTIPART_FRAMING_BYTES
from harness import AppWithSidecar, bearer, start_pair, wait_until

MODEL_LIMIT = 1 << 20  # GatewaySettings.max_model_body_bytes
OTHER_LIMIT = 1 << 20  # GatewaySettings.max_body_bytes
UPLOAD_LIMIT = (10 << 20) + (64 << 10)  # GatewaySettings.max_upload_body_bytes
DOCUMENT_LIMIT = 10 << 20  # IngestionSettings.max_document_bytes


@pytest.fixture(scope="module")
def stack(log_dir: Path, secrets: dict[str, str], default_broker: str) -> Iterator[dict[str, AppWithSidecar]]:
    started: list[AppWithSidecar] = []
    try:
        # features too: a large upload is checked until it is searchable. Ingestion sends up to
        # 1,000 chunks an event (INGESTION_CHUNKS_PER_EVENT's most, 64 by default): a 9 MB document
        # is then 14 events, not 210, each of which features indexes in turn (a state write and a
        # manifest update each), so the test waits on ingestion's work, not on features' backlog.
        env = {"ingestion": {"INGESTION_CHUNKS_PER_EVENT": "1000"}}
        for app_id in ("guard", "features", "ingestion", "gateway"):
            started.append(start_pair(app_id, log_dir, secrets, env=env.get(app_id)))
        yield {pair.app.app_id: pair for pair in started}
    finally:
        for pair in reversed(started):
            pair.stop()


def assert_limit_problem(response: httpx.Response, status: int, limit: int) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in response.headers  # the same request can never succeed
    body = response.json()
    assert body["status"] == status and body["limit_bytes"] == limit
    assert f"{limit} bytes" in body["detail"]


def chunked(data: bytes, piece: int = 1 << 16) -> Iterator[bytes]:
    """`data` sent without a Content-Length (Transfer-Encoding: chunked)."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def test_a_5_4_mb_chat_request_is_a_413_naming_the_limit(stack, secrets) -> None:
    """Issue 11 input 11: it was a 503 with Retry-After blaming the guard (daprd's 4 MiB refused it)."""
    url = f"{stack['gateway'].app.url}/v1/chat/completions"
    body = httpx.Request("POST", url, json={"messages": [{"role": "user", "content": "a" * 5_400_000}]}).content
    with httpx.Client(headers=bearer(secrets), timeout=60) as http:
        headers = {"content-type": "application/json"}
        assert_limit_problem(http.post(url, content=body, headers=headers), 413, MODEL_LIMIT)
        assert_limit_problem(http.post(url, content=chunked(body), headers=headers), 413, MODEL_LIMIT)


def test_megabytes_of_one_character_with_lone_surrogates_for_the_guard(stack, secrets) -> None:
    """Issue 11 input 20: it was a 503. Over the body limit: 413 naming it; under it: a verdict, or a
    422 naming the field when the text holds lone surrogates (not a Unicode string)."""
    url = f"{stack['gateway'].app.url}/v1/guard/check"
    with httpx.Client(headers={**bearer(secrets), "content-type": "application/json"}, timeout=120) as http:
        huge = '{"text": "' + "a" * 3_000_000 + "\\ud800" + "a" * 1000 + '\\udfff"}'
        assert_limit_problem(http.post(url, content=huge), 413, OTHER_LIMIT)
        surrogates = '{"text": "' + "a" * 900_000 + '\\ud800 \\udfff"}'
        refused = http.post(url, content=surrogates)
        assert refused.status_code == 422, refused.text[:500]
        assert [error["location"] for error in refused.json()["errors"]] == ["body.text"]
        verdict = http.post(url, content='{"text": "' + "a" * 900_000 + '"}')
        assert verdict.status_code == 200, verdict.text[:500]
        assert verdict.json()["allowed"] is False and verdict.json()["blocked_by"] == ["length"]


def test_a_document_near_the_limit_is_ingested_and_one_over_it_is_a_413(stack, secrets) -> None:
    """A 10 MiB upload passes the gateway, both sidecars (maxBodySize 16Mi) and ingestion; 11 MiB is
    refused at the gateway, declared or chunked; one byte over ingestion's limit is its own 413."""
    url = f"{stack['gateway'].app.url}/v1/documents"
    sentence = f"Size limits are answered as limits, marker {uuid.uuid4().hex}.".encode()
    # Spaces clean away (ingestion folds whitespace): the document is near the limit, its text short.
    near = sentence + b" " * (DOCUMENT_LIMIT - len(sentence))
    with httpx.Client(headers=bearer(secrets), timeout=180) as http:
        created = http.post(url, files={"file": ("near-limit.txt", near, "text/plain")})
        assert created.status_code == 201, created.text[:500]
        document = http.get(f"{url}/{created.json()['id']}", params={"chunks": "true"}).json()
        assert [chunk["text"] for chunk in document["chunks"]] == [sentence.decode()]

        one_over = http.post(url, files={"file": ("one-over.txt", near + b" ", "text/plain")})
        assert one_over.status_code == 413, one_over.text[:500]
        assert str(DOCUMENT_LIMIT) in one_over.json()["detail"]

        over = sentence + b" " * (11 << 20)
        assert_limit_problem(http.post(url, files={"file": ("over.txt", over, "text/plain")}), 413, UPLOAD_LIMIT)
        framed = httpx.Request("POST", url, files={"file": ("over.txt", over, "text/plain")})
        sent = http.post(url, content=chunked(framed.read()), headers={"content-type": framed.headers["content-type"]})
        assert_limit_problem(sent, 413, UPLOAD_LIMIT)


def test_a_9_mb_text_upload_is_stored_and_becomes_searchable(stack, secrets) -> None:
    """A new-user trial's 9 MB plain-text upload was a 503 after 30 s: ingestion's sidecar refused the
    chunks' one state transaction over its body limit ("stream too large"), and extraction took
    about 5 s per MB. Its chunks and events now go in requests of at most 4 MiB. One paragraph over
    and over keeps the test lean: features embeds each distinct chunk text of an event once."""
    gateway = stack["gateway"].app.url
    marker = f"zq{uuid.uuid4().hex[:12]}"
    paragraph = (
        "Tides rise and fall twice a day as the Moon pulls the oceans toward it. Harbour masters "
        "publish tables of high and low water, and sailors read them before they leave port. Spring "
        "tides follow the full and the new Moon; neap tides come between, with a smaller range. "
        "Estuaries funnel the flood tide into a bore that can run far inland."
    )
    text = f"# Tide tables\n\nLarge uploads become searchable, marker {marker}."
    copies = (9_000_000 - len(text)) // (len(paragraph) + 2)
    text += f"\n\n{paragraph}" * copies
    data = text.encode()
    assert 8_900_000 < len(data) <= 9_000_000
    with httpx.Client(base_url=gateway, headers=bearer(secrets), timeout=180) as http:
        created = http.post("/v1/documents", files={"file": ("tides.txt", data, "text/plain")})
        assert created.status_code == 201, created.text[:500]
        document_id = created.json()["id"]
        try:
            document = http.get(f"/v1/documents/{document_id}").json()
            assert document["characters"] == len(text)
            # Every copy is chunked: two of its ~75 tokens fit in a chunk of 200 (INGESTION_CHUNK_TOKENS).
            assert copies // 2 <= document["chunk_count"] <= copies + 1

            def found() -> bool:
                hits = http.post("/v1/search", json={"query": marker, "mode": "keyword", "k": 5}).json()["results"]
                return any(hit["document_id"] == document_id for hit in hits)

            watch = [*stack["features"].processes, *stack["ingestion"].processes]
            # Polled: a shared Redis may hold other tests' events for features ahead of these.
            wait_until(found, what="the 9 MB document searchable", timeout=300, watch=watch)
        finally:
            # Deleted whatever happened: features buries it, so its events still queued are refused
            # (never indexed by a later test's features).
            assert http.delete(f"/v1/documents/{document_id}").status_code == 204
        wait_until(lambda: not found(), what="the 9 MB document gone from the index", timeout=300, watch=watch)


def test_the_sidecars_take_what_the_gateway_lets_through(stack, secrets) -> None:
    """Ingestion's own sidecar has the body limit of `make up` (16Mi, not daprd's 4Mi): a 12 MiB
    upload reaches ingestion, which refuses it with its own 413 naming its limit (the largest
    document and its multipart framing) before reading it, and daprd relays that 413 (closing the
    connection at once made daprd answer its own 500, ERR_DIRECT_INVOKE)."""
    ingestion = stack["ingestion"]
    with ingestion.sidecar.client() as dapr:
        files = {"file": ("big.txt", b"x " * (6 << 20), "text/plain")}
        response = dapr.post("/v1.0/invoke/ingestion/method/v1/documents", files=files)
        assert response.status_code == 413, response.text[:500]
        assert response.json()["limit_bytes"] == DOCUMENT_LIMIT + MULTIPART_FRAMING_BYTES


def test_header_fields_over_the_limit_are_a_431_naming_it(stack, secrets) -> None:
    url = f"{stack['gateway'].app.url}/v1/documents"
    for size in (20_000, 200_000):
        response = httpx.get(url, headers={**bearer(secrets), "x-padding": "p" * size}, timeout=30)
        assert response.status_code == 431, (size, response.status_code, response.text[:300])
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["limit_bytes"] == 16 << 10
