"""The platform's public API: each route checks the API key and the caller's limits, then is
relayed to the app that serves it through Dapr service invocation."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_from_bytes

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway.api_keys import ApiKeyDep, counted_alongside, requires_key
from gateway.chat import PROMPT_FALLBACK_HEADER, ChatPipeline
from gateway.completions import CompletionPipeline
from gateway.openapi import OpenApiDocument
from gateway.output_stream import error_event
from gateway.proxy import UsageMeter, forward
from gateway.settings import GatewaySettings
from gateway.system import SystemHealth, system_health
from gateway.timing import ServerTiming
from gateway.usage import Usage, UsageLedger, prompt_tokens_estimate, usage_of
from gateway.validation import json_body, validated_body
from genai_platform.contracts.openai import COMPLETIONS_DEFAULT_MAX_TOKENS, GatewayChatRequest
from genai_platform.errors import Problem, invalid_request
from genai_platform.paths import invalid_path_parameters
from genai_platform.requests import current_request_id
from genai_platform.service import SidecarDep
from genai_platform.streaming import ClosingStreamingResponse, while_connected


@dataclass(frozen=True)
class PublicRoute:
    """One public route: method and path, the app serving it, its OpenAPI summary and tag."""

    method: str
    path: str
    app_id: str
    summary: str
    tag: str
    generates: bool = False  # long-running and counted against the token quota
    # The app's own path prefix where the public one differs: the registry's `/v1/models` would
    # collide with OpenAI's, so it is public under `/v1/registry/models` and rewritten on the way.
    upstream: tuple[str, str] | None = None

    def upstream_path(self, path: str) -> str:
        """The path the serving app answers `path` (a public request path) under."""
        if self.upstream is None:
            return path
        public, app = self.upstream
        return app + path[len(public) :]


REGISTRY = ("/v1/registry/models", "/v1/models")
# The most a stream's last usage write may take once its client has left (seconds).
SPEND_TIMEOUT_S = 5.0


PUBLIC_ROUTES = (
    PublicRoute("GET", "/v1/models", "inference", "Models being served (OpenAI-compatible)", "openai"),
    PublicRoute("GET", "/v1/models/{model}", "inference", "One served model (OpenAI-compatible)", "openai"),
    PublicRoute("POST", "/v1/embeddings", "features", "Embeddings (OpenAI-compatible)", "openai"),
    PublicRoute("POST", "/v1/documents", "ingestion", "Ingest a document", "documents"),
    PublicRoute("GET", "/v1/documents", "ingestion", "List documents", "documents"),
    PublicRoute("GET", "/v1/documents/{document_id}", "ingestion", "One document", "documents"),
    PublicRoute("DELETE", "/v1/documents/{document_id}", "ingestion", "Delete a document and its chunks", "documents"),
    PublicRoute("POST", "/v1/search", "features", "Search the indexed chunks", "search"),
    PublicRoute(
        "GET", "/v1/index/documents/{document_id}", "features", "A document's indexed chunks (searchable)", "search"
    ),
    PublicRoute("GET", "/v1/registry/models", "registry", "Registered models", "registry", upstream=REGISTRY),
    PublicRoute(
        "GET", "/v1/registry/models/{name}", "registry", "One model, with its aliases", "registry", upstream=REGISTRY
    ),
    PublicRoute(
        "GET",
        "/v1/registry/models/{name}/versions",
        "registry",
        "Every version of a model",
        "registry",
        upstream=REGISTRY,
    ),
    PublicRoute(
        "GET",
        "/v1/registry/models/{name}/versions/{reference}",
        "registry",
        "A version by number, alias or `latest`",
        "registry",
        upstream=REGISTRY,
    ),
    PublicRoute(
        "PUT",
        "/v1/registry/models/{name}/aliases/{alias}",
        "registry",
        "Point an alias at a ready version (promote or roll back)",
        "registry",
        upstream=REGISTRY,
    ),
    PublicRoute(
        "DELETE",
        "/v1/registry/models/{name}/aliases/{alias}",
        "registry",
        "Delete an alias (whoever follows it stops serving its version)",
        "registry",
        upstream=REGISTRY,
    ),
    PublicRoute("GET", "/v1/prompts", "prompts", "List prompt templates", "prompts"),
    PublicRoute("POST", "/v1/prompts", "prompts", "Create a prompt template", "prompts"),
    PublicRoute("GET", "/v1/prompts/{name}", "prompts", "One prompt template", "prompts"),
    PublicRoute("DELETE", "/v1/prompts/{name}", "prompts", "Delete a prompt, every version and label", "prompts"),
    PublicRoute("POST", "/v1/prompts/{name}/versions", "prompts", "Add a version to a prompt", "prompts"),
    PublicRoute("GET", "/v1/prompts/{name}/versions", "prompts", "Every version of a prompt", "prompts"),
    PublicRoute("GET", "/v1/prompts/{name}/versions/{ref}", "prompts", "One version, by number or label", "prompts"),
    PublicRoute("PUT", "/v1/prompts/{name}/labels/{label}", "prompts", "Point a label at a version", "prompts"),
    PublicRoute("DELETE", "/v1/prompts/{name}/labels/{label}", "prompts", "Remove a label", "prompts"),
    PublicRoute("POST", "/v1/prompts/{name}/render", "prompts", "Render a prompt with variables", "prompts"),
    PublicRoute("POST", "/v1/files", "training", "Upload a file of training examples", "fine-tuning"),
    PublicRoute("GET", "/v1/files", "training", "List uploaded files", "fine-tuning"),
    PublicRoute("GET", "/v1/files/{file_id}", "training", "One uploaded file", "fine-tuning"),
    PublicRoute("POST", "/v1/fine_tuning/jobs", "training", "Create a fine-tuning job", "fine-tuning"),
    PublicRoute("GET", "/v1/fine_tuning/jobs", "training", "List fine-tuning jobs", "fine-tuning"),
    PublicRoute("GET", "/v1/fine_tuning/jobs/{job_id}", "training", "One fine-tuning job", "fine-tuning"),
    PublicRoute("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", "training", "Cancel a fine-tuning job", "fine-tuning"),
    PublicRoute("GET", "/v1/fine_tuning/jobs/{job_id}/events", "training", "A job's events", "fine-tuning"),
    PublicRoute("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", "training", "A job's checkpoints", "fine-tuning"),
    PublicRoute(
        "POST", "/v1/fine_tuning/workflows", "training", "Fine-tune, evaluate, register and promote", "fine-tuning"
    ),
    PublicRoute("GET", "/v1/fine_tuning/workflows/{instance_id}", "training", "One workflow's progress", "fine-tuning"),
    PublicRoute("POST", "/v1/guard/check", "guard", "Run the guard rails on a text", "guard"),
    PublicRoute("GET", "/v1/events", "monitor", "Recent events on every topic of the platform", "system"),
    PublicRoute("GET", "/v1/dead-letters", "monitor", "Events whose deliveries were given up", "system"),
    PublicRoute("GET", "/v1/dead-letters/{letter_id}", "monitor", "One dead letter", "system"),
    PublicRoute(
        "POST", "/v1/dead-letters/{letter_id}/replay", "monitor", "Publish a dead letter on its topic again", "system"
    ),
    PublicRoute("DELETE", "/v1/dead-letters/{letter_id}", "monitor", "Discard a dead letter", "system"),
    PublicRoute("GET", "/v1/system/overview", "monitor", "Apps, inference, pub/sub and active alerts", "system"),
    PublicRoute("GET", "/v1/system/dashboards", "monitor", "The dashboards' PromQL definitions", "system"),
    PublicRoute("GET", "/v1/system/dashboards/{uid}/data", "monitor", "A dashboard's series over a range", "system"),
    PublicRoute("GET", "/v1/logs", "monitor", "Log lines of every app and sidecar, paged", "system"),
    PublicRoute("GET", "/v1/traces/{trace_id}", "monitor", "A trace's spans joined with its log lines", "system"),
)
# The chat and text completion pipelines end at inference, whose OpenAPI document holds the
# request and answer bodies.
CHAT_SOURCE = ("POST", "/v1/chat/completions", "inference")
COMPLETIONS_SOURCE = ("POST", "/v1/completions", "inference")
# What the gateway reads on top of inference's chat request (documented, merged into its schema).
CHAT_FIELDS = {
    "type": "object",
    "properties": {
        "collection": {
            "type": "string",
            "description": 'Ground the answer in this collection\'s documents (or send `model: "rag/<collection>"`).',
        },
        "prompt": {
            "description": "A managed prompt to render for the last user turn: its name, or "
            "`{name, label | version, variables}`.",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "label": {"type": "string"},
                        "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                        "variables": {"type": "object", "additionalProperties": True},
                    },
                    "required": ["name"],
                },
            ],
        },
    },
}
SERVER_TIMING_HEADER = {
    "Server-Timing": {
        "description": "Each pipeline stage's duration in milliseconds: `guard-in`, `retrieve`, `prompt`, "
        "`inference`, `guard-out`, `total` (a stream's header: the stages before generation).",
        "schema": {"type": "string"},
    }
}


def schema_sources() -> dict[tuple[str, str], str]:
    """`(METHOD, path)` of each public route -> the app whose OpenAPI document describes it."""
    sources = {(route.method, route.path): route.app_id for route in PUBLIC_ROUTES}
    for method, path, app_id in (CHAT_SOURCE, COMPLETIONS_SOURCE):
        sources[(method, path)] = app_id
    return sources


def schema_app_paths() -> dict[tuple[str, str], str]:
    """`(METHOD, path)` of each rewritten public route -> its path in its app's OpenAPI document."""
    return {(route.method, route.path): route.upstream_path(route.path) for route in PUBLIC_ROUTES if route.upstream}


# RFC 3986's characters a path may hold unescaped, and `%`: escapes the client made stay as they are.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def encoded_path(request: Request) -> str:
    """The request's path as the client encoded it, for relaying it on.

    The decoded path (`request.url.path`) may hold a control character (`%05` -> U+0005) that
    no URL can carry (httpx refuses it: a 500). Relayed encoded, the serving app sees what the
    client sent and refuses a bad id with a 422 naming it (genai_platform.paths). A `%2F` never
    gets this far (`encoded_slashes`).
    """
    raw = request.scope.get("raw_path")
    return quote_from_bytes(raw, safe=_PATH_SAFE) if raw else quote(request.url.path, safe=_PATH_SAFE)


def encoded_slashes(request: Request) -> list[dict[str, str]]:
    """A 422 error entry for each path segment that holds an encoded slash (`%2F`), naming the route
    parameter in its place (`path.name`), or `path` where the route has none.

    The router matches the decoded path, and daprd decodes the method it relays, so an encoded
    slash acts as a separator however the path is relayed: `DELETE /v1/prompts/x%2Flabels%2Fproduction`
    matched the label route and removed a label (a new-user trial). No id or name of the platform
    holds a `/` (genai_platform.paths), so such a segment is refused, as Apache's
    `AllowEncodedSlashes Off` refuses it. A path that, decoded, matches no route gets the router's
    404 or 405 before this runs: nothing is relayed either way.
    """
    raw = request.scope.get("raw_path") or b""
    segments = raw.split(b"?", 1)[0].split(b"/")
    route = request.scope.get("route")
    template = getattr(route, "path", "").split("/")
    errors = []
    for index, segment in enumerate(segments):
        if b"%2f" not in segment.lower():
            continue
        name = template[index] if index < len(template) else ""
        location = f"path.{name[1:-1]}" if name.startswith("{") and name.endswith("}") else "path"
        message = f"'{segment.decode('latin-1')}' holds an encoded '/' (%2F), which no path segment may hold"
        errors.append({"location": location, "message": message})
    return errors


def _relay(route: PublicRoute) -> Callable[..., Awaitable[Response]]:
    async def relay(request: Request, sidecar: SidecarDep, api_key: ApiKeyDep) -> Response:
        settings: GatewaySettings = request.app.state.settings
        limits = request.app.state.limits
        limits.admit(api_key.account)
        if errors := encoded_slashes(request) + invalid_path_parameters(request.path_params):
            raise invalid_request(errors)
        return await forward(
            request,
            sidecar,
            route.app_id,
            route.upstream_path(encoded_path(request)),
            timeout=settings.generation_timeout_seconds if route.generates else settings.request_timeout_seconds,
            on_usage=(lambda tokens: request.app.state.usage.spend(api_key.account, tokens))
            if route.generates
            else None,
        )

    return relay


async def _generation(
    request: Request,
    account: str,
    pipeline: ChatPipeline | CompletionPipeline,
    read_body: Callable[[], Awaitable[Any]],
) -> JSONResponse | StreamingResponse:
    """Read the request (`read_body`), run a generation pipeline (input rails first) and answer
    whole or streamed, the tokens it used spent against the quota of the key's usage `account` and each stage's time in
    `Server-Timing`. The request is counted against the key's quota while its body is read and
    its input rails run (`counted_alongside`), and before inference sees anything; then the
    tokens it may spend are reserved (`UsageLedger.reserve`: 429 when the quota cannot hold
    them) until what it used is spent, whole answer, stream end, client gone or failure."""
    timing = ServerTiming()
    settings: GatewaySettings = request.app.state.settings
    usage: UsageLedger = request.app.state.usage
    request_id = current_request_id.get() or ""
    async with counted_alongside(request, account):
        plan = await pipeline.plan(await read_body(), request_id, timing)
    # The request's max_tokens as it goes to inference (a prompt version's may have filled it),
    # else inference's default: a chat's GATEWAY_MAX_TOKENS (the platform's one figure), a text
    # completion's 16 (OpenAI's; reserving 2048 refused a key's second completion and made its
    # last one longer when cut to the tokens left).
    default = COMPLETIONS_DEFAULT_MAX_TOKENS if isinstance(pipeline, CompletionPipeline) else settings.max_tokens
    max_tokens = plan.request.get("max_completion_tokens") or plan.request.get("max_tokens") or default
    reservation = usage.reserve(account, max_tokens=max_tokens, prompt_tokens=prompt_tokens_estimate(plan.request))
    if reservation.max_tokens is not None:
        # The key's last answer, cut to the tokens left: it ends with finish_reason "length".
        named = [name for name in ("max_tokens", "max_completion_tokens") if name in plan.request]
        for name in named or ["max_tokens"]:
            plan.request[name] = reservation.max_tokens
    # A grounded answer the built-in prompt stood in for says so before its body (chat.PROMPT_FALLBACKS).
    fallback = {PROMPT_FALLBACK_HEADER: plan.prompt_fallback} if plan.prompt_fallback else {}
    if not plan.request.get("stream"):
        try:
            # A client that leaves cancels the call to inference, which then frees the model's slot.
            answer = await while_connected(request, pipeline.complete(plan, request_id))
        except BaseException:
            reservation.release()
            raise
        await usage.spend(account, int((answer.get("usage") or {}).get("total_tokens") or 0), reservation)
        headers = {"Server-Timing": timing.header()} if settings.server_timing else {}
        return JSONResponse(answer, headers={**headers, **fallback})

    stream = pipeline.stream(plan, request_id, report_timing=settings.server_timing)
    try:
        # Inference's answer to the request is known before ours is sent: a request it refuses (a
        # parameter only it checks, a prompt past the context) is its 4xx problem, and inference
        # down a 503 with Retry-After, as without `stream`, not a 200 whose one event is an error.
        first = await anext(stream)
    except BaseException:
        reservation.release()
        await stream.aclose()
        raise

    async def events():
        meter = UsageMeter()
        try:
            # Closed here when the client leaves (ClosingStreamingResponse closes this generator),
            # so the pipeline closes its stream to inference and the generation is cancelled.
            async with contextlib.aclosing(stream):
                yield b""  # where `_generation` starts this generator (below): never sent
                meter.feed(first)
                yield first
                async for event in stream:
                    meter.feed(event)
                    yield event
        except Problem as problem:
            # Headers are gone already: the failure travels as a last event, as OpenAI's do.
            yield error_event(problem)
        finally:
            # Also when the client left mid-answer: what inference generated until then is charged,
            # or stopping just before the end would get an answer free (a new-user trial). Shielded:
            # Starlette ends a stream whose client left by cancelling it, at every await.
            used = int((plan.usage or {}).get("total_tokens") or 0) or meter.total_tokens
            with anyio.move_on_after(SPEND_TIMEOUT_S, shield=True):
                # Releases the reservation once the count lands, or when it fails or runs out of time.
                await usage.spend(account, used, reservation)

    body = events()
    # Started before the response is sent, so that closing it runs its `finally` (the tokens used
    # spent, the reservation released, inference's stream closed) however the response ends: a
    # client that leaves before the first event leaves the body unstarted, and closing a
    # generator that never started runs nothing.
    await anext(body)
    headers = {"Cache-Control": "no-cache", **fallback}
    if settings.server_timing:
        headers["Server-Timing"] = timing.header(total=False)
    return ClosingStreamingResponse(body, media_type="text/event-stream", headers=headers)


def public_router() -> APIRouter:
    """The public API: a relay per `PUBLIC_ROUTES` entry, the chat pipeline, the merged OpenAPI
    document, the caller's usage and the platform's health; every route needs an API key."""
    router = APIRouter()
    for route in PUBLIC_ROUTES:
        router.add_api_route(
            route.path,
            _relay(route),
            methods=[route.method],
            summary=route.summary,
            tags=[route.tag],
            description=f"Served by the `{route.app_id}` app, reached through Dapr service invocation.",
            dependencies=[requires_key(route.method, route.path)],
        )

    @router.post(
        "/v1/chat/completions",
        tags=["openai"],
        summary="Chat completion (OpenAI-compatible), through the guard, retrieval and prompt pipeline",
        description='Extra fields: `collection` (or `model: "rag/<collection>"`) grounds the answer in '
        "that collection's documents; `prompt` names a managed prompt (`{name, label|version, variables}`). "
        "The answer adds `citations` and `lineage` (model, prompt version, trace id). The `Server-Timing` "
        "header gives each stage's duration in milliseconds (`guard-in`, `retrieve`, `prompt`, `inference`, "
        "`guard-out`, `total`); a stream's header holds the stages before generation and its last event "
        "repeats it with every stage as `server_timing`.",
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": CHAT_FIELDS}}}},
        dependencies=[requires_key("POST", "/v1/chat/completions", counted_by_route=True)],
        responses={200: {"description": "The answer, whole or as server-sent events", "headers": SERVER_TIMING_HEADER}},
    )
    async def chat_completions(request: Request, api_key: ApiKeyDep) -> object:
        request.app.state.limits.admit(api_key.account)
        chat: ChatPipeline = request.app.state.chat

        async def read_body() -> Any:
            body = await json_body(request, "chat completion request")
            return validated_body(GatewayChatRequest, body, max_tokens=chat.settings.max_tokens)

        return await _generation(request, api_key.account, chat, read_body)

    @router.post(
        "/v1/completions",
        tags=["openai"],
        summary="Text completion (OpenAI-compatible), through the guard's input and output rails",
        description="The prompt goes through the input rails and each choice's text through the output rails, "
        "whole or streamed, as in chat (see the gateway's README, 'Rails by route'). The `Server-Timing` header "
        "gives `guard-in`, `inference`, `guard-out` and `total` in milliseconds.",
        dependencies=[requires_key("POST", "/v1/completions", counted_by_route=True)],
        responses={
            200: {"description": "The completion, whole or as server-sent events", "headers": SERVER_TIMING_HEADER}
        },
    )
    async def completions(request: Request, api_key: ApiKeyDep) -> object:
        request.app.state.limits.admit(api_key.account)
        # Validated against the contract by the pipeline's first step (CompletionPipeline.plan).
        return await _generation(
            request,
            api_key.account,
            CompletionPipeline(request.app.state.chat),
            lambda: json_body(request, "text completion request"),
        )

    @router.get(
        "/v1/openapi.json",
        tags=["system"],
        summary="One OpenAPI document for the platform's public API",
        description="Every public route with the request and answer bodies of the app that serves it. When an "
        "app cannot be reached the document is partial: `info.x-missing-apps` names the apps left out.",
        responses={200: {"model": OpenApiDocument, "description": "An OpenAPI 3.1 document"}},
        dependencies=[requires_key("GET", "/v1/openapi.json")],
    )
    async def platform_openapi(request: Request, api_key: ApiKeyDep) -> JSONResponse:
        """The merged document (see gateway.openapi); a partial one is never cached."""
        request.app.state.limits.admit(api_key.account)
        document = await request.app.state.openapi.document()
        # A partial document must not be kept by a cache: the next request may find every app.
        cache = "no-store" if document["info"]["x-missing-apps"] else "private, max-age=60"
        return JSONResponse(document, headers={"Cache-Control": cache})

    @router.get(
        "/v1/usage",
        tags=["system"],
        summary="This API key's use: requests and model tokens",
        dependencies=[requires_key("GET", "/v1/usage")],
    )
    async def get_usage(request: Request, api_key: ApiKeyDep) -> Usage:
        # Only the caller's own key: one key's holder learns nothing about the others.
        return await usage_of(
            request.app.state.usage, api_key.account, api_key.project, request.app.state.limits.requests_per_minute
        )

    @router.get(
        "/v1/system/health",
        tags=["system"],
        summary="Readiness of every app of the platform",
        dependencies=[requires_key("GET", "/v1/system/health")],
    )
    async def get_system_health(request: Request, sidecar: SidecarDep, _key: ApiKeyDep) -> SystemHealth:
        settings: GatewaySettings = request.app.state.settings
        return await system_health(sidecar, settings.app_id, settings.platform_apps, settings.health_timeout_seconds)

    return router
