"""One OpenAPI document for the platform's public API, merged from the apps' own documents.

The gateway knows its public routes, their keys and limits, and which app serves each; the
apps know the routes' parameters and request and response bodies. `merge_documents` puts the
two together: each public operation is the serving app's operation (its parameters, bodies and
responses, the app's components renamed `<app-id>.<Name>` so two apps' `Job` or
`HTTPValidationError` cannot collide), under the gateway's summary, tags and security, with the
answers the gateway itself gives (401, 403, 413, 429, 431, 503 problem+json), and links from each
create operation's answer to the operations that take the id it returns (`LINKS`). Only
components the public operations reach are kept: an app's internal routes and their schemas stay out.

An app that cannot be reached leaves a partial document rather than none: its routes are listed
with what the gateway knows of them, and `info.x-missing-apps` names the apps whose schemas
are missing. A partial document is never cached, so the next request tries those apps again.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from genai_platform.dapr import Sidecar
from genai_platform.errors import ProblemDetails

log = logging.getLogger(__name__)

GATEWAY = "gateway"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PROBLEM_SCHEMA = f"{GATEWAY}.Problem"
# What the gateway itself may answer on any public route, before or instead of the app.
GATEWAY_RESPONSES = {
    "401": "No API key, or not a valid one.",
    "403": "The API key lacks a scope this route needs; `missing_scopes` names them.",
    "413": "The request body is over the gateway's limit for this route; `limit_bytes` names it.",
    "429": "Over this key's request rate or token quota; see `Retry-After`.",
    "431": "The request's header fields are over the gateway's limit; `limit_bytes` names it.",
    "503": "The app serving this route cannot be reached right now; see `Retry-After`.",
}
# OpenAPI links (3.1 section 4.8.20) from what a create operation answers to the operations that
# take its id, so a client, or a stateful fuzzer, can follow one from the other:
# (METHOD, path, status) of the create -> (link name, METHOD, path of the user, {parameter: expression}).
LINKS: dict[tuple[str, str, str], list[tuple[str, str, str, dict[str, str]]]] = {
    ("POST", "/v1/documents", "201"): [
        ("GetDocument", "GET", "/v1/documents/{document_id}", {"document_id": "$response.body#/id"}),
        ("GetIndexedDocument", "GET", "/v1/index/documents/{document_id}", {"document_id": "$response.body#/id"}),
        ("DeleteDocument", "DELETE", "/v1/documents/{document_id}", {"document_id": "$response.body#/id"}),
    ],
    ("POST", "/v1/prompts", "201"): [
        ("GetPrompt", "GET", "/v1/prompts/{name}", {"name": "$response.body#/prompt/name"}),
        ("ListVersions", "GET", "/v1/prompts/{name}/versions", {"name": "$response.body#/prompt/name"}),
        ("AddVersion", "POST", "/v1/prompts/{name}/versions", {"name": "$response.body#/prompt/name"}),
        ("RenderPrompt", "POST", "/v1/prompts/{name}/render", {"name": "$response.body#/prompt/name"}),
        (
            "GetVersion",
            "GET",
            "/v1/prompts/{name}/versions/{ref}",
            {"name": "$response.body#/prompt/name", "ref": "$response.body#/version/version"},
        ),
    ],
    ("POST", "/v1/prompts/{name}/versions", "201"): [
        (
            "GetVersion",
            "GET",
            "/v1/prompts/{name}/versions/{ref}",
            {"name": "$response.body#/name", "ref": "$response.body#/version"},
        ),
        ("RenderPrompt", "POST", "/v1/prompts/{name}/render", {"name": "$response.body#/name"}),
    ],
    ("POST", "/v1/files", "200"): [
        ("GetFile", "GET", "/v1/files/{file_id}", {"file_id": "$response.body#/id"}),
    ],
    ("POST", "/v1/fine_tuning/jobs", "200"): [
        ("GetJob", "GET", "/v1/fine_tuning/jobs/{job_id}", {"job_id": "$response.body#/id"}),
        ("GetJobEvents", "GET", "/v1/fine_tuning/jobs/{job_id}/events", {"job_id": "$response.body#/id"}),
        ("GetJobCheckpoints", "GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", {"job_id": "$response.body#/id"}),
        ("CancelJob", "POST", "/v1/fine_tuning/jobs/{job_id}/cancel", {"job_id": "$response.body#/id"}),
    ],
    ("POST", "/v1/fine_tuning/workflows", "202"): [
        ("GetWorkflow", "GET", "/v1/fine_tuning/workflows/{instance_id}", {"instance_id": "$response.body#/id"}),
        ("GetJob", "GET", "/v1/fine_tuning/jobs/{job_id}", {"job_id": "$response.body#/job_id"}),
    ],
}
# The platform's one error shape (genai_platform.errors), as the gateway's own answers use it.
PROBLEM = ProblemDetails.model_json_schema()

Document = dict[str, Any]


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0): only its top level is modelled."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any] = Field(default_factory=dict)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in `node`, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _renamed_ref(ref: str, prefix: str) -> str:
    # "#/components/<section>/<name>": only the name changes.
    parts = ref.split("/", 3)
    if len(parts) == 4 and parts[:2] == ["#", "components"]:
        return f"#/components/{parts[2]}/{prefix}{parts[3]}"
    return ref


def namespace(node: Any, prefix: str) -> Any:
    """A copy of `node` with every local component reference renamed `<prefix><Name>`."""
    node = copy.deepcopy(node)
    for obj in _walk(node):
        if isinstance(obj.get("$ref"), str):
            obj["$ref"] = _renamed_ref(obj["$ref"], prefix)
        discriminator = obj.get("discriminator")
        mapping = discriminator.get("mapping") if isinstance(discriminator, dict) else None
        if isinstance(mapping, dict):
            for key, value in mapping.items():
                if isinstance(value, str):
                    mapping[key] = _renamed_ref(value, prefix)
    return node


def resolve(document: Document, ref: str) -> Any:
    """The object a local `$ref` points at; KeyError when it points at nothing."""
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node: Any = document
    for raw in ref[2:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            raise KeyError(ref)
        node = node[token]
    return node


def dangling_refs(document: Document) -> list[str]:
    """The `$ref`s in `document` that point at nothing (an empty list for a sound document)."""
    dangling = []
    for obj in _walk(document):
        ref = obj.get("$ref")
        if isinstance(ref, str):
            try:
                resolve(document, ref)
            except KeyError:
                dangling.append(ref)
    return sorted(set(dangling))


def _reachable_components(document: Document) -> dict[str, dict[str, Any]]:
    """The components that the document's paths reach, directly or through other components."""
    kept: dict[str, dict[str, Any]] = {}
    pending = [document.get("paths", {})]
    while pending:
        for obj in _walk(pending.pop()):
            ref = obj.get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/components/"):
                continue
            _, _, section, name = ref.split("/", 3)
            if name in kept.get(section, {}):
                continue
            try:
                target = resolve(document, ref)
            except KeyError:
                continue  # reported by dangling_refs, not hidden by dropping it
            kept.setdefault(section, {})[name] = target
            pending.append(target)
    return kept


def _json_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = (operation.get("requestBody") or {}).get("content") or {}
    return (content.get("application/json") or {}).get("schema")


def _public_operation(gateway_op: dict[str, Any], app_op: dict[str, Any], app_id: str) -> dict[str, Any]:
    """The app's operation, as the gateway serves it."""
    operation = namespace(app_op, f"{app_id}.")
    for key in ("summary", "tags", "operationId"):
        if key in gateway_op:
            operation[key] = gateway_op[key]
    operation["description"] = gateway_op.get("description") or operation.get("description", "")
    operation.pop("security", None)  # the app's own token is not the caller's business
    if "security" in gateway_op:
        operation["security"] = gateway_op["security"]
    # Fields the gateway reads on top of the app's body (chat's `collection`, `prompt`).
    extension, base = _json_schema(gateway_op), _json_schema(operation)
    if extension and base:
        operation["requestBody"]["content"]["application/json"]["schema"] = {
            "allOf": [base, namespace(extension, f"{GATEWAY}.")]
        }
    # Headers the gateway adds to the app's answers (chat's `Server-Timing`).
    for status, response in (gateway_op.get("responses") or {}).items():
        if response.get("headers") and status in operation.get("responses", {}):
            target = operation["responses"][status]
            target["headers"] = {**target.get("headers", {}), **namespace(response["headers"], f"{GATEWAY}.")}
    return operation


# What every app (FastAPI) answers for a body it cannot parse at all (not JSON, not UTF-8, a broken
# multipart form or one with too many fields), before validation can name a field.
UNPARSABLE_BODY = "The body could not be parsed: not JSON, not UTF-8, or a malformed multipart form."


def _with_gateway_responses(operation: dict[str, Any]) -> dict[str, Any]:
    responses = operation.setdefault("responses", {})
    if "requestBody" in operation:
        responses.setdefault("400", _problem_response(UNPARSABLE_BODY))
    for status, description in GATEWAY_RESPONSES.items():
        responses.setdefault(status, _problem_response(description))
    return operation


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}},
    }


def merge_documents(
    gateway_doc: Document,
    sources: Mapping[tuple[str, str], str],
    app_docs: Mapping[str, Document | None],
    app_paths: Mapping[tuple[str, str], str] | None = None,
) -> Document:
    """The platform's public API: the gateway's `/v1/` routes with the serving apps' schemas.

    `sources` maps `(METHOD, path)` of a public route to the app that serves it (routes the
    gateway answers itself are not in it); `app_docs` holds each app's OpenAPI document, or
    None for an app that could not be reached; `app_paths` maps a public route to the path its
    app serves it under, where the gateway rewrites it (the registry's `/v1/registry/models...`
    are the registry's `/v1/models...`).
    """
    app_paths = app_paths or {}
    missing = sorted({app_id for app_id in sources.values() if app_docs.get(app_id) is None})
    undocumented: list[str] = []
    paths: dict[str, dict[str, Any]] = {}
    for path, item in gateway_doc.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue  # probes and metrics are not the public API
        for method, gateway_op in item.items():
            if method not in METHODS:
                continue
            app_id = sources.get((method.upper(), path))
            app_doc = app_docs.get(app_id) if app_id else None
            app_path = app_paths.get((method.upper(), path), path)
            app_op = ((app_doc or {}).get("paths", {}).get(app_path) or {}).get(method)
            if app_op is not None and app_id is not None:
                operation = _public_operation(gateway_op, app_op, app_id)
            else:
                operation = namespace(gateway_op, f"{GATEWAY}.")
                if app_id is not None and app_doc is None:
                    operation["x-schema-missing"] = f"the {app_id} app's document could not be read"
                elif app_id is not None:
                    undocumented.append(f"{method.upper()} {path}")  # the app has no such route
            paths.setdefault(path, {})[method] = _with_gateway_responses(operation)

    components: dict[str, dict[str, Any]] = {"schemas": {PROBLEM_SCHEMA: PROBLEM}}
    for app_id, doc in [(GATEWAY, gateway_doc), *app_docs.items()]:
        for section, entries in ((doc or {}).get("components") or {}).items():
            if section == "securitySchemes":
                continue  # only the gateway's API key scheme is the caller's
            for name, entry in entries.items():
                components.setdefault(section, {})[f"{app_id}.{name}"] = namespace(entry, f"{app_id}.")

    info = dict(gateway_doc.get("info", {}))
    info["x-missing-apps"] = missing
    if missing:
        info["description"] = (
            f"{info.get('description', '')}\n\nPartial document: the schemas of {', '.join(missing)} "
            "could not be read; their routes are listed without them."
        ).strip()
    if undocumented:
        info["x-undocumented-operations"] = sorted(undocumented)
    _add_links(paths)
    merged: Document = {"openapi": gateway_doc.get("openapi", "3.1.0"), "info": info, "paths": paths}
    merged["components"] = {**components, "securitySchemes": {}}
    reachable = _reachable_components({**merged, "components": components})
    merged["components"] = {
        **reachable,
        "securitySchemes": (gateway_doc.get("components") or {}).get("securitySchemes", {}),
    }
    return merged


def _add_links(paths: dict[str, dict[str, Any]]) -> None:
    """Put `LINKS` on the create operations' answers, each to an operation present, by its operationId."""
    for (method, path, status), links in LINKS.items():
        response = ((paths.get(path) or {}).get(method.lower()) or {}).get("responses", {}).get(status)
        if response is None:
            continue
        for name, target_method, target_path, parameters in links:
            target = (paths.get(target_path) or {}).get(target_method.lower())
            if target is not None and target.get("operationId"):
                link = {"operationId": target["operationId"], "parameters": parameters}
                response.setdefault("links", {})[name] = link


class PlatformOpenApi:
    """The merged document, built on first use and kept for `ttl` seconds when complete."""

    def __init__(
        self,
        sidecar: Sidecar,
        gateway_doc: Callable[[], Document],
        sources: Mapping[tuple[str, str], str],
        *,
        ttl: float,
        timeout: float,
        app_paths: Mapping[tuple[str, str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sidecar = sidecar
        self._gateway_doc = gateway_doc
        self._sources = dict(sources)
        self._app_paths = dict(app_paths or {})
        self._ttl = ttl
        self._timeout = timeout
        self._clock = clock
        self._cached: Document | None = None
        self._built_at = float("-inf")
        self._lock = asyncio.Lock()

    async def document(self) -> Document:
        """The merged document: the cached one while complete and younger than `ttl` seconds, else
        rebuilt from every app's (each asked through Dapr, `timeout` seconds each). Never raises for
        an app that cannot be read: the document says which are missing."""
        async with self._lock:  # one fetch of every app at a time, however many callers
            if self._cached is not None and self._clock() - self._built_at < self._ttl:
                return self._cached
            app_ids = sorted(set(self._sources.values()))
            fetched = await asyncio.gather(*(self._fetch(app_id) for app_id in app_ids))
            app_docs = dict(zip(app_ids, fetched, strict=True))
            document = merge_documents(self._gateway_doc(), self._sources, app_docs, self._app_paths)
            if not document["info"]["x-missing-apps"]:
                self._cached, self._built_at = document, self._clock()
            return document

    async def _fetch(self, app_id: str) -> Document | None:
        try:
            response = await self._sidecar.invoke(app_id, "openapi.json", method="GET", timeout=self._timeout)
            document = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as error:
            log.warning("the OpenAPI document of %s could not be read: %s", app_id, type(error).__name__)
            return None
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            log.warning("the OpenAPI document of %s could not be read: answered %s", app_id, response.status_code)
            return None
        return document
