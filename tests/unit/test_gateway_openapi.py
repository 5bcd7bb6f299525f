"""The merge behind the gateway's one OpenAPI document, on small hand-made documents."""

from __future__ import annotations

import asyncio
import copy

from fakes import FakeDapr
from gateway.openapi import PlatformOpenApi, dangling_refs, merge_documents, namespace


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def body(name: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def answer(name: str) -> dict:
    return {"200": {"description": "ok", "content": {"application/json": {"schema": ref(name)}}}}


KEY = [{"Key": []}]
STRING = {"type": "string"}
GATEWAY = {
    "openapi": "3.1.0",
    "info": {"title": "GenAI platform API", "version": "0.1.0"},
    "paths": {
        "/healthz": {"get": {"operationId": "healthz", "responses": {}}},
        "/v1/jobs": {
            "post": {"summary": "Create a job", "tags": ["jobs"], "operationId": "relay_jobs", "security": KEY}
        },
        "/v1/tunes": {"post": {"summary": "Create a tune", "operationId": "relay_tunes", "security": KEY}},
        "/v1/chat": {
            "post": {
                "summary": "Chat",
                "operationId": "chat",
                "requestBody": {
                    "content": {"application/json": {"schema": {"properties": {"collection": {"type": "string"}}}}}
                },
                "responses": {"200": {"description": "x", "headers": {"Server-Timing": {"schema": STRING}}}},
            }
        },
        "/v1/health": {"get": {"operationId": "health", "responses": {"200": {"description": "ok"}}}},
    },
    "components": {"securitySchemes": {"Key": {"type": "http", "scheme": "bearer"}}},
}
TRAINING = {
    "paths": {
        "/v1/jobs": {
            "post": {
                "operationId": "create_job",
                "requestBody": body("NewJob"),
                "responses": answer("Job"),
                "security": [{"AppToken": []}],
            }
        },
        "/admin/reset": {"post": {"requestBody": body("Reset")}},
    },
    "components": {
        "schemas": {
            "NewJob": {"properties": {"method": ref("Method")}},
            "Method": {"enum": ["lora", "full"]},
            "Job": {"properties": {"id": {"type": "string"}}},
            "Reset": {"properties": {"hard": {"type": "boolean"}}},
        },
        "securitySchemes": {"AppToken": {"type": "apiKey", "in": "header", "name": "dapr-api-token"}},
    },
}
TUNING = {
    "paths": {"/v1/tunes": {"post": {"requestBody": body("Job"), "responses": answer("Job")}}},
    "components": {"schemas": {"Job": {"properties": {"epochs": {"type": "integer"}}}}},
}
INFERENCE = {
    "paths": {"/v1/chat": {"post": {"requestBody": body("ChatRequest"), "responses": answer("ChatAnswer")}}},
    "components": {
        "schemas": {
            "ChatRequest": {"properties": {"messages": {"type": "array"}}},
            "ChatAnswer": {
                "oneOf": [ref("Whole"), ref("Refusal")],
                "discriminator": {"propertyName": "kind", "mapping": {"whole": "#/components/schemas/Whole"}},
            },
            "Whole": {"properties": {"text": {"type": "string"}}},
            "Refusal": {"properties": {"reason": {"type": "string"}}},
        }
    },
}
SOURCES = {("POST", "/v1/jobs"): "training", ("POST", "/v1/tunes"): "tuning", ("POST", "/v1/chat"): "inference"}
ALL_APPS = {"training": TRAINING, "tuning": TUNING, "inference": INFERENCE}


def test_each_public_route_gets_its_apps_bodies_under_namespaced_names() -> None:
    merged = merge_documents(GATEWAY, SOURCES, ALL_APPS)
    jobs = merged["paths"]["/v1/jobs"]["post"]
    assert jobs["requestBody"]["content"]["application/json"]["schema"] == ref("training.NewJob")
    assert jobs["responses"]["200"]["content"]["application/json"]["schema"] == ref("training.Job")
    # Two apps' `Job` schemas live side by side, each where its own routes point.
    schemas = merged["components"]["schemas"]
    assert schemas["training.Job"] == TRAINING["components"]["schemas"]["Job"]
    assert schemas["tuning.Job"] == TUNING["components"]["schemas"]["Job"]
    assert merged["paths"]["/v1/tunes"]["post"]["requestBody"]["content"]["application/json"]["schema"] == ref(
        "tuning.Job"
    )
    # A component reached through another is kept, with its reference renamed too.
    assert schemas["training.NewJob"]["properties"]["method"] == ref("training.Method")
    assert "training.Method" in schemas
    assert dangling_refs(merged) == []
    assert merged["info"]["x-missing-apps"] == []


def test_the_gateway_speaks_for_summary_security_and_its_own_answers() -> None:
    jobs = merge_documents(GATEWAY, SOURCES, ALL_APPS)["paths"]["/v1/jobs"]["post"]
    assert (jobs["summary"], jobs["tags"], jobs["operationId"]) == ("Create a job", ["jobs"], "relay_jobs")
    assert jobs["security"] == [{"Key": []}]  # the caller's API key, not the app's token
    for status in ("401", "429", "503"):
        assert jobs["responses"][status]["content"]["application/problem+json"]["schema"] == ref("gateway.Problem")


def test_internal_routes_and_their_schemas_stay_out() -> None:
    merged = merge_documents(GATEWAY, SOURCES, ALL_APPS)
    assert "/admin/reset" not in merged["paths"] and "/healthz" not in merged["paths"]
    assert "training.Reset" not in merged["components"]["schemas"]
    assert list(merged["components"]["securitySchemes"]) == ["Key"]


def test_fields_and_headers_the_gateway_adds_are_merged_into_the_apps_operation() -> None:
    chat = merge_documents(GATEWAY, SOURCES, ALL_APPS)["paths"]["/v1/chat"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert schema["allOf"][0] == ref("inference.ChatRequest")
    assert schema["allOf"][1]["properties"]["collection"] == {"type": "string"}
    assert "Server-Timing" in chat["responses"]["200"]["headers"]
    assert chat["responses"]["200"]["content"]["application/json"]["schema"] == ref("inference.ChatAnswer")


def test_discriminator_mappings_are_renamed_with_the_schemas() -> None:
    merged = merge_documents(GATEWAY, SOURCES, ALL_APPS)
    answer_schema = merged["components"]["schemas"]["inference.ChatAnswer"]
    assert answer_schema["discriminator"]["mapping"] == {"whole": "#/components/schemas/inference.Whole"}
    assert {"inference.Whole", "inference.Refusal"} <= set(merged["components"]["schemas"])


def test_an_unreachable_app_leaves_a_partial_document_that_says_so() -> None:
    merged = merge_documents(GATEWAY, SOURCES, {**ALL_APPS, "training": None})
    assert merged["info"]["x-missing-apps"] == ["training"]
    assert "training" in merged["info"]["description"]
    jobs = merged["paths"]["/v1/jobs"]["post"]
    assert "requestBody" not in jobs and "training" in jobs["x-schema-missing"]
    assert merged["paths"]["/v1/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]["allOf"]
    assert dangling_refs(merged) == []


def test_a_public_route_its_app_does_not_document_is_named() -> None:
    training = copy.deepcopy(TRAINING)
    del training["paths"]["/v1/jobs"]
    merged = merge_documents(GATEWAY, SOURCES, {**ALL_APPS, "training": training})
    assert merged["info"]["x-undocumented-operations"] == ["POST /v1/jobs"]
    assert merged["info"]["x-missing-apps"] == []


def test_a_rewritten_route_takes_its_apps_operation_under_the_apps_path() -> None:
    gateway = copy.deepcopy(GATEWAY)
    gateway["paths"]["/v1/registry/models"] = {"get": {"summary": "Registered models", "operationId": "relay"}}
    registry = {
        "paths": {"/v1/models": {"get": {"responses": answer("Model")}}},
        "components": {"schemas": {"Model": {"properties": {"name": STRING}}}},
    }
    route = ("GET", "/v1/registry/models")
    merged = merge_documents(
        gateway, {**SOURCES, route: "registry"}, {**ALL_APPS, "registry": registry}, {route: "/v1/models"}
    )
    models = merged["paths"]["/v1/registry/models"]["get"]
    assert models["responses"]["200"]["content"]["application/json"]["schema"] == ref("registry.Model")
    assert models["summary"] == "Registered models"
    assert "x-undocumented-operations" not in merged["info"]


def test_the_merge_leaves_its_inputs_alone() -> None:
    before = copy.deepcopy(ALL_APPS), copy.deepcopy(GATEWAY)
    merge_documents(GATEWAY, SOURCES, ALL_APPS)
    assert before == (ALL_APPS, GATEWAY)


def test_dangling_references_are_found() -> None:
    document = {"paths": {"/x": {"get": {"responses": answer("Gone")}}}, "components": {"schemas": {"Here": {}}}}
    assert dangling_refs(document) == ["#/components/schemas/Gone"]
    assert dangling_refs({**document, "components": {"schemas": {"Gone": {}}}}) == []


def test_namespace_renames_local_component_references_only() -> None:
    node = {"a": ref("X"), "b": [{"$ref": "https://example.com/schema.json"}], "c": {"$ref": "#/paths/~1v1"}}
    renamed = namespace(node, "app.")
    assert renamed["a"] == ref("app.X")
    assert renamed["b"][0]["$ref"] == "https://example.com/schema.json"
    assert renamed["c"]["$ref"] == "#/paths/~1v1"


def test_a_complete_document_is_cached_for_its_ttl_and_a_partial_one_not_at_all() -> None:
    now = [0.0]
    dapr = FakeDapr(app_id="gateway")  # an app with no answer in its table is down
    for app_id in ("tuning", "inference"):
        dapr.answer(app_id, "openapi.json", ALL_APPS[app_id])
    openapi = PlatformOpenApi(dapr.sidecar(), lambda: GATEWAY, SOURCES, ttl=60, timeout=1, clock=lambda: now[0])

    async def scenario() -> None:
        partial = await openapi.document()
        assert partial["info"]["x-missing-apps"] == ["training"]
        dapr.answer("training", "openapi.json", TRAINING)  # the app comes back
        complete = await openapi.document()
        assert complete["info"]["x-missing-apps"] == []
        calls = len(dapr.invocations)
        assert await openapi.document() is complete  # from the cache: no new invocations
        assert len(dapr.invocations) == calls
        now[0] = 61.0
        await openapi.document()
        assert len(dapr.invocations) == calls + 3  # rebuilt after the TTL, every app asked again
        assert {(call.method, call.http_method) for call in dapr.invocations} == {("openapi.json", "GET")}

    asyncio.run(scenario())
