"""Path parameters are validated before a route runs: control characters and non-ASCII text are a
422 naming the parameter, in every app whose ids, names, labels or refs reach a state key."""

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from genai_platform.errors import install_error_handlers
from genai_platform.paths import ResourceId

BAD = ["%057", "doc%0A", "doc%00", "caf%C3%A9", "%E2%80%AEdoc", "a%20b", "-leading", "x" * 201]


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things/{thing_id}")
    async def get(thing_id: ResourceId) -> dict:
        return {"id": thing_id}

    return app


@pytest.mark.parametrize("raw", BAD)
def test_a_bad_id_is_a_422_problem_naming_the_parameter(raw: str) -> None:
    response = TestClient(app()).get(f"/things/{raw}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["location"] for e in response.json()["errors"]] == ["path.thing_id"]


@pytest.mark.parametrize("good", ["doc-0123456789abcdef0123456789abcdef", "ftjob-ab12", "file-ftwf-1a2b", "a:b.c_d"])
def test_ids_the_platform_makes_pass(good: str) -> None:
    assert TestClient(app()).get(f"/things/{good}").json() == {"id": good}


def _routers():
    from features.routes import api as features_api
    from ingestion.routes import documents
    from prompts.routes import prompts
    from training.routes import files_router, jobs_router
    from training.workflow_routes import router as workflows

    return [documents, prompts, files_router, jobs_router, workflows, features_api]


def test_every_path_parameter_of_these_apps_has_a_pattern() -> None:
    """The kind, not one input: a new route with a bare `str` path parameter fails here."""
    unchecked, checked = [], 0
    for router in _routers():
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for param in route.dependant.path_params:
                checked += 1
                patterns = [getattr(m, "pattern", None) for m in param.field_info.metadata]
                if param.field_info.annotation is str and not any(patterns):
                    unchecked.append(f"{route.path} {param.name}")
    assert unchecked == [] and checked >= 15


@pytest.mark.parametrize(
    ("raw", "relayed"),
    [
        (b"/v1/prompts/%057", "/v1/prompts/%057"),
        (b"/v1/documents/caf\xc3\xa9", "/v1/documents/caf%C3%A9"),  # raw UTF-8 from a lax client
        (b"/v1/files/file-1:2", "/v1/files/file-1:2"),
    ],
)
def test_the_gateway_relays_a_path_as_the_client_encoded_it(raw: bytes, relayed: str) -> None:
    """Relayed decoded, `%05` became a control character httpx cannot send (a 500 at the gateway)."""
    import httpx
    from starlette.requests import Request

    from gateway.routes import encoded_path

    scope = {"type": "http", "method": "GET", "path": raw.decode("latin-1"), "raw_path": raw, "headers": []}
    assert encoded_path(Request(scope)) == relayed
    httpx.Request("GET", "http://127.0.0.1:3500/v1.0/invoke/prompts/method" + relayed)  # a URL httpx sends


def test_a_relay_names_each_parameter_no_url_can_carry() -> None:
    from genai_platform.paths import invalid_path_parameters

    params = {"name": "rag-answer", "label": "x\ny", "ref": "caf\u00e9", "id": "doc-1\n", "ok": "v1.2:3"}
    assert [e["location"] for e in invalid_path_parameters(params)] == ["path.label", "path.ref", "path.id"]


@pytest.mark.parametrize(
    ("raw", "template", "locations"),
    [
        (b"/v1/prompts/x%2Flabels%2Fproduction", "/v1/prompts/{name}/labels/{label}", ["path.name"]),
        (b"/v1/prompts/a/labels/b%2fc", "/v1/prompts/{name}/labels/{label}", ["path.label"]),
        (b"/v1/documents%2Fx", "/v1/documents", ["path"]),
        (b"/v1/prompts/x?next=%2F", "/v1/prompts/{name}", []),  # a query may hold one
        (b"/v1/prompts/a%252Fb", "/v1/prompts/{name}", []),  # an encoded '%' then '2F': no slash
    ],
)
def test_an_encoded_slash_in_a_path_segment_is_named_by_the_routes_parameter(
    raw: bytes, template: str, locations: list[str]
) -> None:
    from types import SimpleNamespace

    from starlette.requests import Request

    from gateway.routes import encoded_slashes

    route = SimpleNamespace(path=template)
    scope = {"type": "http", "method": "GET", "path": "", "raw_path": raw, "headers": [], "route": route}
    assert [e["location"] for e in encoded_slashes(Request(scope))] == locations
