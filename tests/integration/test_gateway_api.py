"""The gateway's public API through real sidecars: API keys, request ids, limits, relaying."""

import hashlib
import json
import struct
import uuid

import httpx

from gateway.openapi import dangling_refs
from harness import bearer, wait_until


def test_a_public_route_is_relayed_to_its_app_through_dapr(start_app, default_broker, secrets) -> None:
    monitor = start_app("monitor")
    gateway = start_app("gateway")
    monitor.wait_ready()
    gateway.wait_ready()
    with monitor.sidecar.client() as dapr:
        dapr.post("/v1.0/publish/pubsub/prompt.updated", json={"name": "greeting", "version": 2})

    def relayed() -> list | None:
        response = httpx.get(
            f"{gateway.app.url}/v1/events", params={"topic": "prompt.updated"}, headers=bearer(secrets), timeout=10
        )
        assert response.status_code == 200, response.text
        return response.json() or None

    events = wait_until(relayed, what="the event through the gateway", watch=gateway.processes + monitor.processes)
    assert events[0]["data"] == {"name": "greeting", "version": 2}
    assert httpx.get(f"{gateway.app.url}/v1/events").status_code == 401


def test_an_app_that_is_not_running_is_a_503_problem(start_app, default_broker, secrets) -> None:
    gateway = start_app("gateway")
    gateway.wait_ready()
    response = httpx.get(f"{gateway.app.url}/v1/documents", headers={**bearer(secrets), "X-Request-Id": "r-1"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "r-1"
    assert "ERR_" not in response.text and "dapr" not in response.text.lower()


def test_over_the_rate_limit_is_a_429_with_retry_after(start_app, default_broker, secrets) -> None:
    gateway = start_app("gateway", env={"GATEWAY_REQUESTS_PER_MINUTE": "2"})
    gateway.wait_ready()
    codes = [
        httpx.get(f"{gateway.app.url}/v1/events", headers=bearer(secrets), timeout=10).status_code for _ in range(3)
    ]
    assert codes[2] == 429, codes
    refused = httpx.get(f"{gateway.app.url}/v1/events", headers=bearer(secrets), timeout=10)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"


def test_the_openapi_document_names_the_apps_it_could_not_read(start_app, default_broker, secrets) -> None:
    prompts = start_app("prompts")
    gateway = start_app("gateway")
    prompts.wait_ready()
    gateway.wait_ready()
    response = httpx.get(f"{gateway.app.url}/v1/openapi.json", headers=bearer(secrets), timeout=60)
    assert response.status_code == 200, response.text
    document = response.json()
    # Only prompts runs beside the gateway: the others' routes are listed, without their schemas.
    missing = set(document["info"]["x-missing-apps"])
    assert {"features", "inference", "ingestion", "training"} <= missing and "prompts" not in missing
    assert response.headers["cache-control"] == "no-store"
    render = document["paths"]["/v1/prompts/{name}/render"]["post"]
    assert render["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/prompts.RenderRequest"
    }
    assert "features" in document["paths"]["/v1/search"]["post"]["x-schema-missing"]
    assert dangling_refs(document) == []


def test_a_path_parameter_no_url_can_carry_is_a_422_naming_it(start_app, default_broker, secrets) -> None:
    """Issue 11 input 16 through the front door: control characters and non-ASCII text in an id,
    a name or a label are refused by the gateway (daprd cannot relay them); an id the gateway
    relays is refused by its app, by the app's own alphabet."""
    prompts = start_app("prompts")
    gateway = start_app("gateway")
    prompts.wait_ready()
    gateway.wait_ready()
    headers = bearer(secrets)
    calls = [
        ("GET", "/v1/prompts/%057", "name"),
        ("GET", "/v1/prompts/rag-answer/versions/caf%C3%A9", "ref"),
        ("PUT", "/v1/prompts/rag-answer/labels/x%0Ay", "label"),
        ("DELETE", "/v1/prompts/rag-answer/labels/%00", "label"),
        ("POST", "/v1/prompts/%1F/render", "name"),
        ("GET", "/v1/documents/doc%0A", "document_id"),
        ("DELETE", "/v1/documents/doc-caf%C3%A9", "document_id"),
        ("GET", "/v1/files/file%05", "file_id"),
        ("GET", "/v1/prompts/Upper", "name"),  # relayed: the prompts app's names are lowercase
        # An encoded slash: routed and relayed as a separator, this removed the label `production`
        # of `rag-answer` (a new-user trial); the segment is refused, named by the route's parameter.
        ("DELETE", "/v1/prompts/rag-answer%2Flabels%2Fproduction", "name"),
        ("GET", "/v1/prompts/rag-answer%2Fversions", "name"),
    ]
    with httpx.Client(base_url=gateway.app.url, headers=headers, timeout=30) as client:
        for method, path, parameter in calls:
            response = client.request(method, path, json={"version": 1} if method == "PUT" else None)
            assert response.status_code == 422, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert f"path.{parameter}" in [e["location"] for e in response.json()["errors"]], response.text
        head = client.get("/v1/prompts/rag-answer")
        assert head.status_code == 200 and "production" in head.json()["labels"], head.text


def test_generation_bodies_meet_the_openai_contract_before_anything_else(start_app, default_broker, secrets) -> None:
    """Issue 11 inputs 5-7, 19 and lax types, answered by the gateway itself: no guard or inference runs here."""
    gateway = start_app("gateway")
    gateway.wait_ready()
    hello = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "weather", "parameters": {}}}
    for path, body, status, field in (
        ("chat/completions", {"messages": [{"role": ""}]}, 422, "body.messages.0.role"),
        ("chat/completions", {"messages": [{"role": "user", "content": None}]}, 422, "body.messages.0.content"),
        ("chat/completions", {"messages": hello, "max_tokens": True}, 422, "body.max_tokens"),
        ("chat/completions", {"messages": hello, "tools": [tool], "tool_choice": "required"}, 400, "tools"),
        ("chat/completions", {"messages": hello, "response_format": {"type": "json_object"}}, 400, "response_format"),
        ("chat/completions", {"messages": hello, "logprobs": True, "top_logprobs": 2}, 400, "logprobs"),
        ("completions", {"prompt": "hi", "seed": 1e23}, 422, "body.seed"),
        ("completions", {"prompt": "hi", "suffix": "end"}, 400, "suffix"),
    ):
        answer = httpx.post(f"{gateway.app.url}/v1/{path}", json=body, headers=bearer(secrets), timeout=10)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        if status == 422:
            assert field in [error["location"] for error in answer.json()["errors"]], answer.text
        else:
            assert answer.json()["error"]["param"] == field, answer.text


def test_a_registry_404_through_the_gateway_names_the_callers_path(start_app, default_broker, secrets) -> None:
    """A new-user trial: `instance` was the registry app's own `/v1/models/...`; it is the public path."""
    registry = start_app("registry")
    gateway = start_app("gateway")
    registry.wait_ready()
    gateway.wait_ready()
    for path in ("/v1/registry/models/no-such-model", "/v1/registry/models/no-such-model/versions/production"):
        response = httpx.get(f"{gateway.app.url}{path}", headers=bearer(secrets), timeout=30)
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["instance"] == path
        assert "no-such-model" in response.json()["detail"]


def test_an_alias_is_deleted_through_the_gateway_with_the_promote_scope(start_app, default_broker, secrets) -> None:
    registry = start_app("registry")
    gateway = start_app("gateway")
    registry.wait_ready()
    gateway.wait_ready()
    name = f"gw-{uuid.uuid4().hex[:8]}"
    with registry.sidecar.client() as dapr:
        models = "/v1.0/invoke/registry/method/v1/models"
        assert dapr.post(models, json={"name": name}).status_code == 201
        number = dapr.post(f"{models}/{name}/versions", json={}).json()["version"]
        header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
        weights = struct.pack("<Q", len(header)) + header + struct.pack("<f", 1.0)
        files = f"{models}/{name}/versions/{number}/files/model.safetensors"
        assert dapr.put(f"{files}/parts/0", content=weights).status_code == 200
        done = {"parts": 1, "sha256": hashlib.sha256(weights).hexdigest()}
        assert dapr.post(f"{files}/complete", json=done).status_code == 200
        assert dapr.post(f"{models}/{name}/versions/{number}/ready").status_code == 200
    path = f"{gateway.app.url}/v1/registry/models/{name}/aliases/staging"
    moved = httpx.put(path, json={"version": number}, headers=bearer(secrets), timeout=30)
    assert moved.status_code == 200, moved.text
    deleted = httpx.delete(path, headers=bearer(secrets), timeout=30)
    assert deleted.status_code == 204, deleted.text
    model = httpx.get(f"{gateway.app.url}/v1/registry/models/{name}", headers=bearer(secrets), timeout=30).json()
    assert model["aliases"] == {}
    again = httpx.delete(path, headers=bearer(secrets), timeout=30)
    assert again.status_code == 404 and again.headers["content-type"] == "application/problem+json"
    assert again.json()["instance"] == f"/v1/registry/models/{name}/aliases/staging"
    assert httpx.delete(path, timeout=30).status_code == 401  # a key is required, as for every write
