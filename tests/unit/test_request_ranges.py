"""Every number a public request may carry has a declared range, so a value out of it is a 422
naming the field (issue 11: `/v1/search` with `top_k: -5` was a 200), and an unknown field of a
search is a 422 naming it rather than silently ignored.

The merged OpenAPI document is built in process from every app's own document, as
tests/unit/test_openapi_document.py does; the walk covers parameters and request bodies.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.openapi import GATEWAY, merge_documents
from gateway.routes import schema_app_paths, schema_sources

APPS = ("gateway", "ingestion", "features", "registry", "inference", "prompts", "guard", "training", "monitor")
# Upper bounds that are a setting of the serving app or a property of its model, not a constant of
# the schema: a value over it is a 400 naming the field (inference's LimitExceeded for max_tokens
# over INFERENCE_MAX_TOKENS; features' UnsupportedField for dimensions other than the model's, and
# its InputOverLimit, `limit: vocab_size`, for a token id outside the model's vocabulary, as
# inference answers a text completion's token-id prompt).
SETTING_BOUNDS = {
    "POST /v1/chat/completions body.max_tokens",
    "POST /v1/chat/completions body.max_completion_tokens",
    "POST /v1/completions body.max_tokens",
    "POST /v1/embeddings body.dimensions",
    "POST /v1/embeddings body.input[]",
    "POST /v1/embeddings body.input[][]",
    "POST /v1/completions body.prompt[]",
    "POST /v1/completions body.prompt[][]",
}


def settings_for(app_id: str) -> Any:
    settings_type = getattr(importlib.import_module(f"{app_id}.settings"), f"{app_id.capitalize()}Settings")
    return settings_type.model_validate({"APP_ID": app_id, "APP_PORT": "1"})


@pytest.fixture(scope="module")
def merged() -> dict[str, Any]:
    documents = {
        app_id: importlib.import_module(f"{app_id}.app").create_app(settings_for(app_id)).openapi() for app_id in APPS
    }
    apps = {app_id: document for app_id, document in documents.items() if app_id != GATEWAY}
    return merge_documents(documents[GATEWAY], schema_sources(), apps, schema_app_paths())


def unbounded_numbers(document: dict[str, Any]) -> list[str]:
    """`METHOD path where.field` of every integer or number in a request without a minimum and a maximum."""
    schemas = document["components"]["schemas"]
    found: list[str] = []

    def walk(node: Any, where: str, seen: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        if ref := node.get("$ref"):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(schemas[name], where, seen | {name})
            return
        if node.get("type") in ("integer", "number"):
            low = "minimum" in node or "exclusiveMinimum" in node
            high = "maximum" in node or "exclusiveMaximum" in node
            if not (low and high):
                found.append(where)
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key, []):
                walk(option, where, seen)
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{where}.{name}", seen)
        walk(node.get("items"), f"{where}[]", seen)
        walk(node.get("additionalProperties"), f"{where}{{}}", seen)

    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                walk(
                    parameter.get("schema"),
                    f"{method.upper()} {path} {parameter['in']}.{parameter['name']}",
                    frozenset(),
                )
            for content in ((operation.get("requestBody") or {}).get("content") or {}).values():
                walk(content.get("schema"), f"{method.upper()} {path} body", frozenset())
    return found


def test_every_number_in_a_public_request_has_a_range(merged: dict[str, Any]) -> None:
    assert sorted(set(unbounded_numbers(merged)) - SETTING_BOUNDS) == []


def test_the_walk_finds_an_unbounded_number() -> None:
    document = {
        "components": {"schemas": {"Q": {"type": "object", "properties": {"k": {"type": "integer", "minimum": 1}}}}},
        "paths": {
            "/s": {
                "post": {
                    "parameters": [{"in": "query", "name": "offset", "schema": {"type": "integer", "maximum": 9}}],
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Q"}}}},
                }
            }
        },
    }
    assert unbounded_numbers(document) == ["POST /s query.offset", "POST /s body.k"]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"query": "q", "top_k": -5}, "body.top_k"),
        ({"query": "q", "k": -5}, "body.k"),
        ({"query": "q", "k": 101}, "body.k"),
        ({"query": "q", "vector_weight": 2}, "body.vector_weight"),
        ({"query": "q", "mmr_lambda": -0.1}, "body.mmr_lambda"),
    ],
)
def test_a_search_out_of_range_is_a_422_naming_the_field(body: dict[str, Any], location: str) -> None:
    """Refused by validation, before the route needs the index or the model (the lifespan never runs)."""
    app = importlib.import_module("features.app").create_app(settings_for("features"))
    response = TestClient(app).post("/v1/search", json=body)
    assert response.status_code == 422, response.text
    assert [error["location"] for error in response.json()["errors"]] == [location]


def test_every_create_links_to_the_operations_that_take_its_id(merged: dict[str, Any]) -> None:
    """The document's OpenAPI links (gateway.openapi.LINKS), which a stateful fuzzer follows, all land."""
    from gateway.openapi import LINKS

    operation_ids = {
        operation["operationId"]
        for item in merged["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    for (method, path, status), links in LINKS.items():
        declared = merged["paths"][path][method.lower()]["responses"][status]["links"]
        assert set(declared) == {name for name, *_ in links}, (method, path)
        assert {link["operationId"] for link in declared.values()} <= operation_ids
    document = merged["paths"]["/v1/documents"]["post"]["responses"]["201"]["links"]["GetDocument"]
    assert document["parameters"] == {"document_id": "$response.body#/id"}


def test_a_body_that_cannot_be_parsed_is_a_documented_400(merged: dict[str, Any]) -> None:
    for path, item in merged["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "requestBody" in operation:
                assert "400" in operation["responses"], (method, path)
