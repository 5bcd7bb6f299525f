"""One error shape for every service: RFC 9457 problem+json, never an internal message.

Domain code raises `DomainError`s (a store's `VersionNotFound`, `PromptNotFound`, ...): plain
exceptions that know the HTTP status they stand for but hold no HTTP machinery, mapped to
problem+json once, by the handlers installed here. Routes raise `Problem` for what only the
HTTP layer knows (a malformed body). `is_transient` tells a caller that may retry (a workflow
activity) a passing failure from one that will fail the same way again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    """An error a client can act on; raised by domain code, rendered as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type_
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem+json body: type, title, status, detail, the extensions, and `instance` when given."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }
        if instance:
            body["instance"] = instance
        return body


class DomainError(Exception):
    """An error of the domain that a client can act on; mapped to problem+json by the shared handlers.

    Subclasses set `status` (the HTTP status it maps to), and may set `title` (defaults to the
    status phrase), `type_` (a URI naming the problem) and `transient` (True when the same call
    may succeed later, e.g. a record that kept changing under an update). `detail` is shown to
    the client as it is, so it names the thing and never carries internal text; `extensions`
    become extra members of the problem body (e.g. `current_version`).
    """

    status: ClassVar[int] = 400
    title: ClassVar[str | None] = None
    type_: ClassVar[str] = "about:blank"
    transient: ClassVar[bool] = False

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def problem(self) -> Problem:
        """This error as the problem+json it is answered with."""
        return Problem(
            self.status, self.detail, title=self.title, type_=self.type_, headers=self.headers, **self.extensions
        )


class NotFound(DomainError):
    """The named record does not exist (404)."""

    status = 404


class Conflict(DomainError):
    """The request contradicts the record's current state (409), e.g. a name taken."""

    status = 409
    title = "Conflict"


class Invalid(DomainError):
    """The request is well-formed but cannot be carried out as asked (422)."""

    status = 422


class ConcurrentUpdate(Conflict):
    """A read-modify-write kept losing its optimistic-concurrency race (409); worth retrying later."""

    transient = True


class Unavailable(DomainError):
    """Something this service depends on cannot answer now (503, with Retry-After)."""

    status = 503
    transient = True


# HTTP statuses that say "the same request may succeed later": timeout, too many requests, 5xx.
_TRANSIENT_STATUSES = frozenset({408, 429})


def is_transient_status(status: int) -> bool:
    """True for a status worth retrying: 408, 429 and every 5xx (RFC 9110 15.5.9, RFC 6585 4, 15.6)."""
    return status >= 500 or status in _TRANSIENT_STATUSES


# Errors that come back the same on every try: bad data (a pydantic ValidationError is a
# ValueError) or a bug.
_BAD_DATA_OR_CODE = (ValueError, TypeError, LookupError, AttributeError, AssertionError)


def is_transient(error: BaseException) -> bool:
    """Whether `error` may go away by retrying the same call later.

    Not transient, so never retried: a `DomainError` or `Problem` with a 4xx status (a missing
    version, a refused request), any error whose `transient` attribute says False (the registry
    client's `RegistryError` for a 4xx, training's `RegistrationFailed`), a sidecar 4xx other than
    an ETag conflict, and the errors of bad data or code (`ValueError`, `TypeError`,
    `LookupError`, `AttributeError`, `AssertionError`). Transient: timeouts and lost connections,
    408, 429 and 5xx answers, ETag races lost too often, and any other error: a process shutting
    down mid-call (`RuntimeError: Event loop is closed`) must not fail a durable workflow for good.
    """
    if isinstance(error, DomainError):
        return error.transient or is_transient_status(error.status)
    if isinstance(error, Problem):
        return is_transient_status(error.status)
    if isinstance(error, (TimeoutError, ConnectionError, httpx.TransportError)):
        return True
    transient = getattr(error, "transient", None)  # a client's error family may say so itself
    if isinstance(transient, bool):
        return transient
    status = getattr(error, "status", None)  # DaprError and its StateConflict carry the sidecar's status
    if isinstance(status, int):
        return status == 409 or is_transient_status(status)
    return not isinstance(error, _BAD_DATA_OR_CODE)


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    """`problem` as an application/problem+json answer with its status and headers; `instance` is the request's path."""
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.body(instance), status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem_response(exc.problem(), request)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(Problem(exc.status_code, detail, headers=dict(exc.headers or {})), request)


def validation_errors(errors: Iterable[Mapping[str, Any]], prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Pydantic's (or FastAPI's) error entries as the platform's `errors`: `[{location, message}]`,
    the location dotted (`body.messages.0.role`) after `prefix`; the input is never echoed back."""
    return [
        {"location": ".".join(str(part) for part in (*prefix, *err.get("loc", ()))), "message": err.get("msg", "")}
        for err in errors
    ]


def invalid_request(errors: list[dict[str, str]], detail: str = "The request is not valid.") -> Problem:
    """The platform's one 422 shape: title "Invalid request", `errors` naming each field and why."""
    return Problem(422, detail, title="Invalid request", errors=errors)


def body_too_large(limit: int, what: str) -> Problem:
    """The 413 for a body over `limit` bytes (RFC 9110 15.5.14), naming the limit (`limit_bytes`);
    `what` names whose limit it is ("uploads", "this service")."""
    return Problem(
        413,
        f"The request body is larger than the limit of {limit} bytes for {what}.",
        title="Content Too Large",
        limit_bytes=limit,
    )


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(invalid_request(validation_errors(exc.errors())), request)


async def _on_unreachable(request: Request, exc: Exception) -> JSONResponse:
    # A call to the sidecar (or a server the app calls itself) timed out or found no listener: an
    # outage the client can wait out, not a bug. A cut link between daprd and Redis made daprd's
    # retries outlast the sidecar client's timeout, and this was a 500 (test_faults_network.py).
    log.warning("a dependency did not answer on %s %s: %r", request.method, request.url.path, exc)
    problem = Problem(503, "A service this one depends on did not answer; try again.", headers={"Retry-After": "5"})
    return problem_response(problem, request)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(Problem(500, "An internal error occurred."), request)


def install_error_handlers(app: FastAPI) -> None:
    """Answer `Problem`, `DomainError`, HTTP, validation, unreachable-dependency (`httpx.TransportError`:
    503 with Retry-After) and unexpected errors as problem+json."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(DomainError, _on_domain_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(httpx.TransportError, _on_unreachable)
    app.add_exception_handler(Exception, _on_unexpected)


# --- the same shapes, declared in the OpenAPI document ---------------------------------------


class ProblemDetails(BaseModel):
    """The body of every error answer: an RFC 9457 problem, sent as application/problem+json.

    `type` is a URI naming the problem ("about:blank" when the status says it all), `title` its
    short summary, `status` the HTTP status, `detail` what went wrong in this occurrence, and
    `instance` the request path. Extension members (e.g. `errors`, `current_version`) may follow.
    """

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str = Field(description='A URI naming the kind of problem; "about:blank" when the status says it all.')
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this occurrence, for the client to act on.")
    instance: str | None = Field(None, description="The path of the request that failed.")
    # A plain object here, not a model: a nested model's `$defs` would not resolve where the
    # gateway files this schema in the merged document.
    error: dict[str, Any] | None = Field(
        None,
        description="OpenAI's error object (`message`, `type`, `param`, `code`), which OpenAI's SDKs read: "
        "on every error answer of the gateway, and on an app's OpenAI-compatible routes.",
    )


class FieldError(BaseModel):
    """One invalid part of a request: where it is (`body.messages.0.role`) and what is wrong."""

    location: str
    message: str


class ValidationProblemDetails(ProblemDetails):
    """A 422 problem for a request that failed validation: `errors` names each invalid field."""

    model_config = ConfigDict(title="ValidationProblemDetails")

    errors: list[FieldError]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=` for the error statuses it answers, each a `ProblemDetails`.

    FastAPI files a response model under application/json; `document_problems` moves it to
    application/problem+json, which is what the handlers above send.
    """
    return {status: {"model": ProblemDetails, "description": HTTPStatus(status).phrase} for status in statuses}


_REF = "#/components/schemas/"
_PROBLEM_MODELS = (ProblemDetails, ValidationProblemDetails)


def problem_document(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (an app's OpenAPI document) with its error answers as they are really sent.

    Every declared error answer whose JSON schema is a problem model, and FastAPI's default 422
    (`HTTPValidationError`, a shape no handler here sends), becomes application/problem+json
    with `ProblemDetails` or `ValidationProblemDetails`; the unused FastAPI schemas go.
    Changes `document` in place and returns it.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    problem_refs = {_REF + model.__name__ for model in _PROBLEM_MODELS}
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in (operation.get("responses") or {}).items():
                content = response.get("content") or {}
                schema = (content.get("application/json") or {}).get("schema") or {}
                if status == "422" and schema.get("$ref") == _REF + "HTTPValidationError":
                    schema = {"$ref": _REF + ValidationProblemDetails.__name__}
                    if response.get("description") == "Validation Error":
                        response["description"] = "The request is not valid: `errors` names each field and why."
                elif schema.get("$ref") not in problem_refs:
                    continue
                del content["application/json"]
                content[PROBLEM_JSON] = {"schema": schema}
    _, top = models_json_schema([(model, "serialization") for model in _PROBLEM_MODELS], ref_template=_REF + "{model}")
    schemas.update(top["$defs"])
    used = _refs(document.get("paths"))
    for unused in ("HTTPValidationError", "ValidationError"):
        if _REF + unused not in used:
            schemas.pop(unused, None)
    return document


def _refs(node: Any) -> set[str]:
    """Every `$ref` in a JSON node."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def document_problems(app: FastAPI) -> None:
    """Make `app.openapi()` declare problem+json error answers (see `problem_document`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
