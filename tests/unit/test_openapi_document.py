"""The merged OpenAPI document, built in process from every app's own `app.openapi()`.

No process starts: each app is constructed (its lifespan, which opens models and the sidecar,
never runs) and asked for its document, and the gateway's merge puts them together as
GET /v1/openapi.json does. Every public route must then say what it answers, with a schema.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from gateway.openapi import GATEWAY, dangling_refs, merge_documents, resolve
from gateway.rails import MODEL_APP, ROUTE_RAILS
from gateway.routes import PUBLIC_ROUTES, schema_app_paths, schema_sources
from openapi_checks import operations, undescribed_operations

APPS = ("gateway", "ingestion", "features", "registry", "inference", "prompts", "guard", "training", "monitor")
PROBLEM_JSON = "application/problem+json"


def app_document(app_id: str) -> dict[str, Any]:
    settings_type = getattr(importlib.import_module(f"{app_id}.settings"), f"{app_id.capitalize()}Settings")
    settings = settings_type.model_validate({"APP_ID": app_id, "APP_PORT": "1"})
    return importlib.import_module(f"{app_id}.app").create_app(settings).openapi()


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {app_id: app_document(app_id) for app_id in APPS}


@pytest.fixture(scope="module")
def merged(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    apps = {app_id: document for app_id, document in documents.items() if app_id != GATEWAY}
    return merge_documents(documents[GATEWAY], schema_sources(), apps, schema_app_paths())


def test_the_merged_document_is_whole_and_sound(merged: dict[str, Any]) -> None:
    assert merged["info"]["x-missing-apps"] == []
    assert "x-undocumented-operations" not in merged["info"]
    assert dangling_refs(merged) == []


def test_every_public_route_declares_what_it_answers(merged: dict[str, Any]) -> None:
    assert undescribed_operations(merged) == set()
    # A new-user trial: a scoped route listed no 403, and no problem schema declared OpenAI's `error`.
    for method, path, operation in operations(merged):
        assert {"401", "403"} <= set(operation["responses"]), (method, path)
    problems = [schema for name, schema in merged["components"]["schemas"].items() if name.endswith("Problem")]
    assert problems and all("error" in schema["properties"] for schema in problems)


def test_every_declared_request_body_has_a_schema(merged: dict[str, Any]) -> None:
    for method, path, operation in operations(merged):
        for media, body in operation.get("requestBody", {}).get("content", {}).items():
            assert body.get("schema"), (method, path, media)
    # The one route that reads its body by hand declares both of its forms.
    upload = merged["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert set(upload) == {"application/json", "multipart/form-data"}


def test_error_answers_are_problem_json_never_fastapis_default(documents: dict[str, dict[str, Any]]) -> None:
    for app_id, document in documents.items():
        schemas = document["components"]["schemas"]
        assert "HTTPValidationError" not in schemas, app_id
        for method, path, operation in operations(document):
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")) and response.get("content"):
                    assert list(response["content"]) == [PROBLEM_JSON], (app_id, method, path, status)
                    schema = resolve(document, response["content"][PROBLEM_JSON]["schema"]["$ref"])
                    assert {"type", "title", "status", "detail"} <= set(schema["required"]), (app_id, path)


def test_an_invalid_request_is_documented_as_the_problem_it_gets(documents: dict[str, dict[str, Any]]) -> None:
    search = documents["features"]["paths"]["/v1/search"]["post"]["responses"]["422"]
    assert search["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/ValidationProblemDetails"}
    fields = documents["features"]["components"]["schemas"]["ValidationProblemDetails"]["properties"]
    assert {"errors", "detail", "status"} <= set(fields)


def test_every_route_that_reaches_inference_is_in_the_rails_table(merged: dict[str, Any]) -> None:
    """Issue 11: one input and output policy for every route that reaches a model. A public
    operation served by inference (relayed, or a gateway pipeline ending there) must be in
    gateway.rails.ROUTE_RAILS; one that runs no rails must generate nothing (no token quota)."""
    sources = schema_sources()
    generating = {(r.method, r.path) for r in PUBLIC_ROUTES if r.generates}
    reaching = {(method, path) for method, path, _ in operations(merged) if sources.get((method, path)) == MODEL_APP}
    assert reaching, "no route of the merged document is served by inference"
    assert reaching - set(ROUTE_RAILS) == set(), "add these routes, and their rails, to gateway.rails.ROUTE_RAILS"
    for route in reaching:
        assert ROUTE_RAILS[route].guarded or route not in generating, route
    assert {("POST", "/v1/chat/completions"), ("POST", "/v1/completions")} <= {
        route for route in reaching if ROUTE_RAILS[route].guarded
    }
    # No stale row: every route of the table is a public operation.
    assert set(ROUTE_RAILS) <= {(method, path) for method, path, _ in operations(merged)}
