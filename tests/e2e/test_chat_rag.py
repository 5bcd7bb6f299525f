"""Ask the gateway about a fact only an ingested document holds: the answer cites that document,
and PII in the model's answer reaches the client redacted, whole or streamed.

Every app runs beside a real daprd with the real models; the gateway reaches them only through
Dapr service invocation. The official `openai` client and LangChain's `ChatOpenAI` are the
callers, unchanged. The same stack serves the gateway's one OpenAPI document, merged from the
apps' own.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langchain_openai import ChatOpenAI
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from gateway.openapi import dangling_refs, resolve
from gateway.timing import parse_server_timing
from harness import INGESTION_DAPRD_ARGS, ROOT, SECRETS_FILE, AppWithSidecar, bearer, start_pair, wait_until
from openapi_checks import undescribed_operations

APPS = ("guard", "prompts", "monitor", "features", "inference", "gateway")
QUESTION = "What is the launch code word for the Kestrel-7 mission?"
CODE_WORD = "MARIGOLD"
EMAIL = "orbit-desk@kestrel-launch.example"
FACT = (
    "Kestrel Launch Systems handbook. The launch code word for the Kestrel-7 mission is MARIGOLD-PELICAN. "
    f"Questions about the mission go to the launch desk at {EMAIL}."
)


@pytest.fixture(scope="module")
def stack(
    default_broker, log_dir: Path, secrets: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, AppWithSidecar]]:
    started: dict[str, AppWithSidecar] = {}
    try:
        started["ingestion"] = start_pair("ingestion", log_dir, secrets, extra_args=INGESTION_DAPRD_ARGS)
        for app_id in APPS:
            started[app_id] = start_pair(app_id, log_dir, secrets, timeout=300)
        # Only for the OpenAPI document: training's and the registry's routes are part of the public API.
        data_dir = str(tmp_path_factory.mktemp("training"))
        started["training"] = start_pair("training", log_dir, secrets, env={"TRAINING_DATA_DIR": data_dir})
        started["registry"] = start_pair("registry", log_dir, secrets)
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

    # Through features' own sidecar: its access policy lets only the gateway call it from another app.
    with stack["features"].sidecar.client() as dapr:

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
        messages=[{"role": "user", "content": QUESTION}],
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


def prompt_fallbacks(gateway: AppWithSidecar) -> float:
    """The gateway's `gateway_prompt_fallbacks_total{reason="unavailable"}`."""
    metrics = text_string_to_metric_families(httpx.get(f"{gateway.app.url}/metrics", timeout=10).text)
    return sum(
        sample.value
        for family in metrics
        for sample in family.samples
        if sample.name == "gateway_prompt_fallbacks_total" and sample.labels.get("reason") == "unavailable"
    )


def test_a_grounded_answer_falls_back_to_the_built_in_prompt_while_prompts_is_down(stack, document, secrets) -> None:
    """A new-user trial: with the prompts app down every RAG chat was a 503. The answer is grounded
    with the built-in prompt and says so: header, lineage, the gateway's counter."""
    prompts, gateway = stack["prompts"], stack["gateway"]
    ask = {
        "model": f"rag/{document['collection']}",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 8,
        "temperature": 0,
    }
    before = prompt_fallbacks(gateway)
    assert prompts.app.process is not None
    prompts.app.process.stop()  # its sidecar stays and answers that the app cannot be reached
    try:
        with httpx.Client(base_url=gateway.app.url, headers=bearer(secrets), timeout=120) as client:
            whole = client.post("/v1/chat/completions", json=ask)
            assert whole.status_code == 200, whole.text
            assert whole.headers["x-prompt-fallback"] == "unavailable"
            lineage = whole.json()["lineage"]
            assert lineage["prompt"] == {"name": "builtin", "version": None, "fallback": "unavailable"}
            assert document["id"] in [c["document_id"] for c in whole.json()["citations"]]
            with client.stream("POST", "/v1/chat/completions", json={**ask, "stream": True}) as streamed:
                assert streamed.status_code == 200 and streamed.headers["x-prompt-fallback"] == "unavailable"
                events = [line[6:] for line in streamed.iter_lines() if line.startswith("data: {")]
            assert json.loads(events[-1])["lineage"]["prompt"]["fallback"] == "unavailable"
        assert prompt_fallbacks(gateway) == before + 2
    finally:
        prompts.app.start()
        prompts.wait_ready()


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
        # The last event tells every stage's duration, those after the headers left included.
        timing = parse_server_timing((chunks[-1].model_extra or {})["server_timing"])
        assert {"guard-in", "retrieve", "prompt", "inference-first", "inference", "guard-out", "total"} <= set(timing)
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


def langchain_chat(stack, secrets, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{stack['gateway'].app.url}/v1",
        api_key=secrets["gateway-api-keys"].split(",")[0],
        model=model,
        temperature=0,
        max_tokens=24,
        max_retries=0,
        timeout=300,
        include_response_headers=True,
    )


def test_langchain_gets_a_grounded_answer_whole_and_streamed(stack, document, secrets) -> None:
    rag = langchain_chat(stack, secrets, f"rag/{document['collection']}")
    whole = rag.invoke(QUESTION)
    assert CODE_WORD in whole.content, whole.content
    # Every stage ran for this answer, retrieval and prompt render included.
    timing = parse_server_timing(whole.response_metadata["headers"]["server-timing"])
    assert {"guard-in", "retrieve", "prompt", "inference", "guard-out", "total"} <= set(timing)

    chunks = list(rag.stream(QUESTION))
    streamed = "".join(str(chunk.content) for chunk in chunks)
    assert CODE_WORD in streamed, streamed
    assert "retrieve" in parse_server_timing(chunks[0].response_metadata["headers"]["server-timing"])

    # The model alone does not know the code word: the answers above came from the document.
    ungrounded = langchain_chat(stack, secrets, "smollm2").invoke(QUESTION)
    assert CODE_WORD not in ungrounded.content, ungrounded.content


def readme_chat_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Chat: OpenAI-compatible") : readme.index("### Fine-tune")]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_chat_examples_run(stack, document, capsys) -> None:
    examples = readme_chat_examples()
    assert len(examples) == 2  # the openai client and LangChain
    for example in examples:
        # The README's gateway, collection and secrets file are this stack's.
        code = (
            example.replace("http://127.0.0.1:8080", stack["gateway"].app.url)
            .replace('"rag/handbooks"', repr(f"rag/{document['collection']}"))
            .replace('".data/secrets.json"', repr(str(SECRETS_FILE)))
        )
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own example)
        printed = capsys.readouterr().out
        assert printed.count(CODE_WORD) >= 2, printed  # the whole answer and the streamed one
        if "citations" in example:
            assert "Kestrel handbook" in printed, printed


def platform_openapi(stack, secrets) -> httpx.Response:
    return httpx.get(f"{stack['gateway'].app.url}/v1/openapi.json", headers=bearer(secrets), timeout=60)


def request_schema(document: dict, method: str, path: str, media: str = "application/json") -> dict:
    return document["paths"][path][method]["requestBody"]["content"][media]["schema"]


def test_one_openapi_document_describes_the_whole_public_api(stack, secrets) -> None:
    response = platform_openapi(stack, secrets)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["info"]["x-missing-apps"] == []
    assert "x-undocumented-operations" not in document["info"]  # every public route is in its app's document
    # ... and says what it answers, with a schema (tests/openapi_checks.py)
    assert undescribed_operations(document) == set()
    assert dangling_refs(document) == []
    for path in (
        "/v1/documents",
        "/v1/documents/{document_id}",
        "/v1/search",
        "/v1/prompts",
        "/v1/prompts/{name}/render",
        "/v1/models",
        "/v1/fine_tuning/jobs",
        "/v1/fine_tuning/jobs/{job_id}",
        "/v1/chat/completions",
    ):
        assert path in document["paths"], path
    # Request bodies are the serving apps' own schemas, under names that say whose they are.
    schemas = document["components"]["schemas"]
    for method, path, component, field in (
        ("post", "/v1/search", "features.SearchRequest", "query"),
        ("post", "/v1/prompts", "prompts.CreatePrompt", "name"),
        ("post", "/v1/prompts/{name}/render", "prompts.RenderRequest", "variables"),
        ("post", "/v1/fine_tuning/jobs", "training.NewJob", "training_file"),
        ("post", "/v1/embeddings", "features.EmbeddingsRequest", "input"),
    ):
        assert request_schema(document, method, path) == {"$ref": f"#/components/schemas/{component}"}
        assert field in schemas[component]["properties"], (component, schemas[component])
    chat = request_schema(document, "post", "/v1/chat/completions")["allOf"]
    assert "messages" in resolve(document, chat[0]["$ref"])["properties"]
    assert "collection" in chat[1]["properties"]  # what the gateway adds on top of inference's request
    assert "Server-Timing" in document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["headers"]
    # Internal routes (the guard's rails, inference's admin) are not part of the public API.
    assert not [path for path in document["paths"] if not path.startswith("/v1/") or "/admin/" in path]
    assert "/v1/guard/output" not in document["paths"]


def test_the_document_upload_body_is_described(stack, secrets) -> None:
    document = platform_openapi(stack, secrets).json()
    content = document["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert {"text", "url", "path", "collection"} <= set(content["application/json"]["schema"]["properties"])
    form = content["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and "collection" in form["properties"]


def test_the_openapi_document_needs_a_key(stack) -> None:
    response = httpx.get(f"{stack['gateway'].app.url}/v1/openapi.json", timeout=30)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
