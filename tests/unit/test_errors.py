"""Every error leaves a service as RFC 9457 problem+json, with no internal detail."""

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from genai_platform.errors import (
    PROBLEM_JSON,
    Problem,
    ProblemDetails,
    ValidationProblemDetails,
    document_problems,
    install_error_handlers,
    problem_responses,
)


class Body(BaseModel):
    name: str
    count: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things")
    async def create(body: Body) -> dict:
        return body.model_dump()

    @app.get("/limited")
    async def limited() -> None:
        raise Problem(429, "Too many requests for this key.", headers={"Retry-After": "3"}, limit="10/min")

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("password=hunter2 in /etc/secret")

    @app.get("/sidecar-timeout")
    async def sidecar_timeout() -> None:
        raise httpx.ReadTimeout("timed out waiting for http://127.0.0.1:3500/v1.0/state/statestore/key")

    return app


def test_domain_problem_keeps_status_headers_and_extensions() -> None:
    response = TestClient(make_app()).get("/limited")
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "3"
    assert response.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Too many requests for this key.",
        "limit": "10/min",
        "instance": "/limited",
    }


def test_validation_error_names_the_field() -> None:
    response = TestClient(make_app()).post("/things", json={"name": "x", "count": "many"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["location"] for e in response.json()["errors"]] == ["body.count"]


def test_unexpected_error_hides_its_message() -> None:
    response = TestClient(make_app(), raise_server_exceptions=False).get("/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "Traceback" not in response.text


def test_unknown_route_is_a_problem_too() -> None:
    response = TestClient(make_app()).get("/nowhere")
    assert response.status_code == 404
    assert response.json()["status"] == 404


def test_the_openapi_document_declares_the_problems_that_are_really_sent() -> None:
    app = make_app()
    document_problems(app)

    @app.get("/things/{name}", responses=problem_responses(404))
    async def one(name: str) -> dict:
        raise Problem(404, f"no thing {name}")

    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    invalid = document["paths"]["/things"]["post"]["responses"]["422"]["content"]
    assert invalid == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ValidationProblemDetails"}}}
    missing = document["paths"]["/things/{name}"]["get"]["responses"]["404"]["content"]
    assert missing == {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
    assert app.openapi() is document  # built once

    # What the handlers send validates against what the document declares.
    client = TestClient(app)
    ValidationProblemDetails.model_validate(client.post("/things", json={"name": "x", "count": "many"}).json())
    assert ProblemDetails.model_validate(client.get("/things/x").json()).status == 404


def test_a_dependency_that_does_not_answer_is_a_503_with_retry_after() -> None:
    response = TestClient(make_app()).get("/sidecar-timeout")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "5"
    assert "127.0.0.1" not in response.text  # no internal detail
