"""The OpenAI request contract (genai_platform.contracts.openai): every field of the `openai`
package's request types is honoured, accepted as a documented no-op, or refused with a 400
naming it; wrong types are 422s naming the field. Issue 11 inputs 5-7, 17, 19 and the lax
coercions, through inference's real routes on a tiny model and the gateway's validation step."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import openai.types.chat.completion_create_params as chat_params
import openai.types.completion_create_params as text_params
import openai.types.embedding_create_params as embedding_params
import pytest
import torch
from test_inference_api import AUTH, running, settings

from features.settings import FeaturesSettings
from gateway.settings import GatewaySettings
from gateway.validation import validated_body
from genai_platform.contracts.openai import (
    ACCEPTED_NO_OP,
    EXTENSIONS,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingsRequest,
    GatewayChatRequest,
    GenerationFields,
    InputOverLimit,
    OpenAIRequest,
    UnsupportedField,
    honoured_fields,
)
from genai_platform.errors import Problem
from inference.app import create_app
from inference.decoding import SamplingParams, pick_tokens

HELLO = [{"role": "user", "content": "Hello there"}]
CONTRACTS = [(ChatCompletionRequest, chat_params), (CompletionRequest, text_params)]


def openai_fields(module: ModuleType) -> set[str]:
    """Every field of the `openai` package's request type in `module`, streamed or not."""
    fields: set[str] = set()
    for name in (
        "CompletionCreateParamsBase",
        "CompletionCreateParamsStreaming",
        "CompletionCreateParamsNonStreaming",
        "EmbeddingCreateParams",
    ):
        fields |= set(getattr(module, name, object).__dict__.get("__annotations__", {}))
    assert fields, f"no request type found in {module.__name__}"
    return fields


def accepted(contract: type[OpenAIRequest]) -> set[str]:
    return set(ACCEPTED_NO_OP) & set(contract.model_fields)


@pytest.mark.parametrize(
    ("contract", "module"),
    [*CONTRACTS, (EmbeddingsRequest, embedding_params)],
    ids=["chat", "completions", "embeddings"],
)
def test_every_openai_field_is_honoured_accepted_or_refused_and_no_set_overlaps(
    contract: type[OpenAIRequest], module: ModuleType
) -> None:
    fields = openai_fields(module)
    honoured, no_op, refused = honoured_fields(contract), accepted(contract), set(contract.REFUSED)
    assert {"messages", "prompt", "input"} & fields and {"model"} <= fields
    assert fields - (honoured | no_op | refused) == set(), "an OpenAI field the contract does not place"
    assert not (honoured & refused) and not (honoured & no_op) and not (no_op & refused)
    # Nothing is declared for a field OpenAI does not have; our own extensions are all the model adds.
    assert (honoured | no_op | refused) - fields == set()
    assert set(contract.model_fields) - fields <= set(EXTENSIONS) | {"collection", "prompt"}


def post_all(folder: Path, requests: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
    """POST each `(path, body)` to inference's real app (tiny model, in process); status and JSON."""

    async def go() -> list[tuple[int, dict[str, Any]]]:
        async with running(create_app(settings(folder))) as client:
            answers = []
            for path, body in requests:
                # json.dumps writes NaN and Infinity as clients' encoders do (httpx's refuses them).
                sent = json.dumps(body)
                response = await client.post(path, content=sent, headers={**AUTH, "content-type": "application/json"})
                answers.append((response.status_code, response.json()))
            return answers

    return asyncio.run(asyncio.wait_for(go(), 120))


def base(contract: type[GenerationFields]) -> tuple[str, dict[str, Any]]:
    if contract is ChatCompletionRequest:
        return "/v1/chat/completions", {"messages": HELLO, "max_tokens": 2, "temperature": 0}
    return "/v1/completions", {"prompt": "Hello", "max_tokens": 2, "temperature": 0}


def test_each_refused_field_is_a_400_naming_it_and_its_neutral_value_is_served(tiny_llama_folder: Path) -> None:
    requests, expected = [], []
    for contract, _ in CONTRACTS:
        path, body = base(contract)
        for name, refusal in contract.REFUSED.items():
            requests.append((path, {**body, name: refusal.example}))
            expected.append((400, name))
            for neutral in refusal.neutral:
                requests.append((path, {**body, name: neutral}))
                expected.append((200, name))
        requests.append((path, {**body, "max_token": 5}))  # a typo is no silent default
        expected.append((400, "max_token"))
    answers = post_all(tiny_llama_folder, requests)
    for (status, name), (got, answer), (_, sent) in zip(expected, answers, requests, strict=True):
        assert got == status, (name, sent, answer)
        if status == 400:
            assert answer["error"]["param"] == name and f"`{name}`" in answer["detail"], answer
            assert answer["error"]["type"] == "invalid_request_error"


def test_issue_11_inputs_are_refused_by_field_or_answered_correctly(tiny_llama_folder: Path, tiny_llama) -> None:
    chat, text = "/v1/chat/completions", "/v1/completions"
    tokenizer = tiny_llama[1]
    (cat,) = tokenizer.encode(" cat", add_special_tokens=False)
    ask = {"max_tokens": 3, "temperature": 0}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        # 19: an empty role, and a user turn with no content.
        (chat, {"messages": [{"role": ""}]}, 422, "body.messages.0.role"),
        (chat, {"messages": [{"role": "user", "content": None}]}, 422, "body.messages.0.content"),
        (chat, {"messages": [{"role": "assistant"}]}, 422, "body.messages.0"),
        (chat, {"messages": [{"role": "wizard", "content": "hi"}]}, 422, "body.messages.0.role"),
        # Lax coercions are gone.
        (chat, {"messages": HELLO, "stream": "yes"}, 422, "body.stream"),
        (chat, {"messages": HELLO, "max_tokens": True}, 422, "body.max_tokens"),
        (text, {"prompt": "Hi", "temperature": "0.5"}, 422, "body.temperature"),
        # Finite floats; 64-bit seeds (1e23 was a 503 from an overflow in the sampler).
        (chat, {"messages": HELLO, "top_p": math.nan}, 422, "body.top_p"),
        (chat, {"messages": HELLO, "temperature": math.inf}, 422, "body.temperature"),
        (chat, {"messages": HELLO, "seed": 1e23}, 422, "body.seed"),
        (chat, {"messages": HELLO, "seed": 2**64}, 422, "body.seed"),
        # 5-7: logprobs, forced tools and JSON mode are refused, never a 200 that pretends.
        (chat, {"messages": HELLO, "logprobs": True, "top_logprobs": 2}, 400, "logprobs"),
        (
            chat,
            {
                "messages": HELLO,
                "tools": [{"type": "function", "function": {"name": "weather", "parameters": {}}}],
                "tool_choice": {"type": "function", "function": {"name": "weather"}},
            },
            400,
            "tools",
        ),
        (chat, {"messages": HELLO, "response_format": {"type": "json_object"}}, 400, "response_format"),
        (
            chat,
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
            400,
            "messages[0].content[0].type",
        ),
        # A model not served is a 404 naming it (the served one is `tiny` here, alias `smollm2`).
        (chat, {"messages": HELLO, "model": "gpt-4o"}, 404, "model"),
        (text, {"prompt": "Hi", "model": "tiny-2"}, 404, "model"),
        (chat, {"messages": HELLO, "max_tokens": 10**9}, 400, "max_tokens"),
        # logit_bias: token ids of the model's vocabulary, biases in [-100, 100].
        (text, {"prompt": "Hi", "logit_bias": {"99999999": 5}}, 400, "logit_bias"),
        (text, {"prompt": "Hi", "logit_bias": {"cat": 5}}, 422, "body.logit_bias.cat.[key]"),
        (text, {"prompt": "Hi", "logit_bias": {"7": 101}}, 422, "body.logit_bias.7"),
        (chat, {"messages": HELLO, "max_completion_tokens": 10**9}, 400, "max_completion_tokens"),
    ]
    answered = [
        (chat, {"messages": [{"role": "USER", "content": "Hello there"}], **ask}),
        (
            chat,
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]}
                ],
                **ask,
            },
        ),  # noqa: E501
        (chat, {"messages": [{"role": "user", "content": "Hello there"}], **ask}),
        (text, {"prompt": "Once upon", "echo": True, **ask}),
        (text, {"prompt": "Once upon", "top_p": 5e-324, "temperature": 1.0, "max_tokens": 3}),  # 17
        (text, {"prompt": "Once upon", **ask}),
        (text, {"prompt": "Once upon", "model": "TINY", **ask}),
        (text, {"prompt": "Once upon", "model": "smollm2", **ask}),
        (text, {"prompt": "Once upon", "logit_bias": {str(cat): 100}, **ask}),
    ]
    answers = post_all(tiny_llama_folder, [(path, body) for path, body, _, _ in cases] + answered)
    for (_, body, status, field), (got, answer) in zip(cases, answers, strict=False):
        assert got == status, (body, answer)
        if status == 422:
            assert field in [error["location"] for error in answer["errors"]], answer
        else:
            assert answer["error"]["param"] == field, answer
    upper, parts, lower, echoed, tiny_top_p, plain, by_name, by_alias, biased = (
        answer for _, answer in answers[len(cases) :]
    )
    # A bias of 100 all but forces its token: every one generated is it.
    assert biased["choices"][0]["text"] == tokenizer.decode([cat] * 3) != plain["choices"][0]["text"]
    assert by_name["model"] == by_alias["model"] == "tiny" and by_alias["choices"] == plain["choices"]
    # A role in capitals is the same turn; parts are the text they join.
    content = lower["choices"][0]["message"]["content"]
    assert upper["choices"][0]["message"]["content"] == content == parts["choices"][0]["message"]["content"]
    # echo: the prompt leads the completion.
    assert echoed["choices"][0]["text"] == "Once upon" + plain["choices"][0]["text"]
    # A top_p below any token's mass keeps the most likely token: the greedy answer.
    assert tiny_top_p["choices"][0]["text"] == plain["choices"][0]["text"]


def test_tiny_temperatures_and_top_p_pick_the_most_likely_token() -> None:
    logits = torch.tensor([[0.5, 3.0, -1.0, 2.9]])
    for temperature, top_p in ((5e-324, 1.0), (1e-40, 1.0), (1.0, 5e-324), (2e-300, 5e-324)):
        params = SamplingParams(max_tokens=1, temperature=temperature, top_p=top_p, seed=3)
        assert pick_tokens(logits, [params], [params.make_generator()]) == [1], (temperature, top_p)
    # Every 64-bit seed the contract lets through seeds a generator.
    for seed in (-(2**63), 2**63 - 1):
        assert SamplingParams(max_tokens=1, seed=seed).make_generator() is not None


def test_the_gateway_validates_before_anything_else_and_keeps_the_pipelines_shape() -> None:
    body = {
        "messages": [{"role": "User", "content": [{"type": "text", "text": "hi"}]}],
        "prompt": {"name": "support", "variables": {"topic": "x"}},
        "collection": "ops",
        "n": 1,
    }
    assert validated_body(GatewayChatRequest, body) == {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "prompt": {"name": "support", "variables": {"topic": "x"}},
        "collection": "ops",
        "n": 1,
    }
    with pytest.raises(UnsupportedField) as refused:
        validated_body(GatewayChatRequest, {**body, "tools": [{"type": "function"}]})
    assert refused.value.param == "tools" and refused.value.status == 400
    with pytest.raises(Problem) as invalid:
        validated_body(GatewayChatRequest, {**body, "messages": [{"role": ""}], "prompt": {"variables": {}}})
    locations = {error["location"] for error in invalid.value.extensions["errors"]}
    assert invalid.value.status == 422 and {"body.messages.0.role", "body.prompt.PromptReference.name"} <= locations
    with pytest.raises(Problem):
        validated_body(CompletionRequest, ["not", "an", "object"])


@pytest.mark.parametrize("model", [GatewayChatRequest, CompletionRequest])
def test_stream_options_without_stream_is_a_400_naming_it_as_openai_answers(model) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]} if model is GatewayChatRequest else {"prompt": "hi"}
    for stream in (None, False):
        sent = {**body, "stream_options": {"include_usage": True}, **({} if stream is None else {"stream": stream})}
        with pytest.raises(UnsupportedField) as refused:
            validated_body(model, sent)
        assert refused.value.status == 400 and refused.value.param == "stream_options"
        assert refused.value.extensions["error"]["message"] == "`stream_options` is only allowed when `stream` is true."
    # With a stream, or a null stream_options, it is served.
    validated_body(model, {**body, "stream": True, "stream_options": {"include_usage": True}})
    validated_body(model, {**body, "stream_options": None})


def test_the_inference_readme_table_places_every_openai_field() -> None:
    readme = (Path(__file__).parents[2] / "apps/inference/README.md").read_text()
    section = readme.split("### OpenAI compatibility", 1)[1].split("\n\n", 2)[2]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in row.split("|")[1].split("`")[1::2]}
    assert openai_fields(chat_params) | openai_fields(text_params) <= documented


def test_too_many_embedding_inputs_in_a_small_body_is_a_400_naming_input_and_the_limit() -> None:
    body = {"model": "all-MiniLM-L6-v2", "input": ["a short text"] * 5000}
    # Well under the gateway's body limit for model routes: the count is the limit crossed, not the bytes.
    assert len(json.dumps(body).encode()) < GatewaySettings().max_model_body_bytes
    request = EmbeddingsRequest.model_validate(body)
    max_inputs = FeaturesSettings().max_inputs
    assert max_inputs == 2048  # OpenAI's own limit, the features app's default
    with pytest.raises(InputOverLimit) as refused:
        request.check_input_count(max_inputs)
    problem = refused.value.problem().body()
    assert (problem["status"], problem["param"], problem["limit"], problem["limit_value"]) == (
        400,
        "input",
        "max_inputs",
        2048,
    )
    assert problem["error"]["param"] == "input" and "5000" in problem["detail"] and "2048" in problem["detail"]
    EmbeddingsRequest.model_validate({**body, "input": body["input"][:2048]}).check_input_count(max_inputs)


def test_a_completion_prompt_takes_openais_four_shapes_and_one_prompt_per_request() -> None:
    """`prompt` is a string, an array of strings, an array of token ids or an array of token-id
    arrays (a new-user trial: `[1, 2, 3]` was pydantic's "at most 1 item" 422); one prompt is served."""
    for prompt, text, ids in (
        ("Hi", "Hi", None),
        (["Hi"], "Hi", None),
        ([1, 2, 3], None, [1, 2, 3]),
        ([[1, 2, 3]], None, [1, 2, 3]),
    ):
        request = CompletionRequest.model_validate({"prompt": prompt})
        assert (request.prompt_text(), request.prompt_ids()) == (text, ids)
        assert validated_body(CompletionRequest, {"prompt": prompt}) == {"prompt": prompt}
    assert CompletionRequest.model_validate({"prompt": [1, 2, 3, 4]}).element(3) == "prompt[3]"
    assert CompletionRequest.model_validate({"prompt": [[1, 2, 3, 4]]}).element(3) == "prompt[0][3]"
    # Several prompts: a 400 naming `prompt` that says why, not pydantic's list length.
    for several in (["a", "b"], [[1], [2, 3]]):
        with pytest.raises(UnsupportedField) as refused:
            validated_body(CompletionRequest, {"prompt": several})
        assert refused.value.param == "prompt" and refused.value.status == 400
        message = refused.value.extensions["error"]["message"]
        assert message.startswith("`prompt` holds 2 prompts. One prompt per request is served")
    # What no shape takes: a 422 at the element, one error each (not one per member of the union).
    for prompt, location in (
        ([], "body.prompt"),
        ("", "body.prompt"),
        ([""], "body.prompt.0"),
        ([[]], "body.prompt.0"),
        ([1, "a"], "body.prompt.1"),
        ([True], "body.prompt.0"),
        ([1.5], "body.prompt.0"),
        ([[1, "x"]], "body.prompt.0.1"),
        (7, "body.prompt"),
    ):
        with pytest.raises(Problem) as invalid:
            validated_body(CompletionRequest, {"prompt": prompt})
        locations = [error["location"] for error in invalid.value.extensions["errors"]]
        assert invalid.value.status == 422 and locations == [location], (prompt, locations)
