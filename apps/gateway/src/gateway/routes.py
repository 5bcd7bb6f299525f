"""The platform's public API: each route checks the API key and the caller's limits, then is
relayed to the app that serves it through Dapr service invocation."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from gateway.api_keys import ApiKeyDep
from gateway.chat import ChatPipeline
from gateway.proxy import UsageMeter, forward
from gateway.settings import GatewaySettings
from gateway.system import system_health
from genai_platform.errors import Problem
from genai_platform.requests import current_request_id
from genai_platform.service import SidecarDep


@dataclass(frozen=True)
class PublicRoute:
    method: str
    path: str
    app_id: str
    summary: str
    tag: str
    generates: bool = False  # long-running and counted against the token quota


PUBLIC_ROUTES = (
    PublicRoute("POST", "/v1/completions", "inference", "Text completion (OpenAI-compatible)", "openai", True),
    PublicRoute("GET", "/v1/models", "inference", "Models being served (OpenAI-compatible)", "openai"),
    PublicRoute("POST", "/v1/embeddings", "features", "Embeddings (OpenAI-compatible)", "openai"),
    PublicRoute("POST", "/v1/documents", "ingestion", "Ingest a document", "documents"),
    PublicRoute("GET", "/v1/documents", "ingestion", "List documents", "documents"),
    PublicRoute("GET", "/v1/documents/{document_id}", "ingestion", "One document", "documents"),
    PublicRoute("DELETE", "/v1/documents/{document_id}", "ingestion", "Delete a document and its chunks", "documents"),
    PublicRoute("POST", "/v1/search", "features", "Search the indexed chunks", "search"),
    PublicRoute("GET", "/v1/prompts", "prompts", "List prompt templates", "prompts"),
    PublicRoute("POST", "/v1/prompts", "prompts", "Create a prompt template", "prompts"),
    PublicRoute("GET", "/v1/prompts/{name}", "prompts", "One prompt template", "prompts"),
    PublicRoute("POST", "/v1/prompts/{name}/versions", "prompts", "Add a version to a prompt", "prompts"),
    PublicRoute("POST", "/v1/prompts/{name}/render", "prompts", "Render a prompt with variables", "prompts"),
    PublicRoute("POST", "/v1/guard/check", "guard", "Run the guard rails on a text", "guard"),
    PublicRoute("GET", "/v1/events", "monitor", "Recent events on every topic of the platform", "system"),
    PublicRoute("GET", "/v1/dead-letters", "monitor", "Events whose deliveries were given up", "system"),
)


def _relay(route: PublicRoute) -> Callable[..., Awaitable[StreamingResponse]]:
    async def relay(request: Request, sidecar: SidecarDep, api_key: ApiKeyDep) -> StreamingResponse:
        settings: GatewaySettings = request.app.state.settings
        limits = request.app.state.limits
        limits.admit(api_key)
        return await forward(
            request,
            sidecar,
            route.app_id,
            request.url.path,
            timeout=settings.generation_timeout_seconds if route.generates else settings.request_timeout_seconds,
            on_usage=(lambda tokens: limits.spend(api_key, tokens)) if route.generates else None,
        )

    return relay


def public_router() -> APIRouter:
    router = APIRouter()
    for route in PUBLIC_ROUTES:
        router.add_api_route(
            route.path,
            _relay(route),
            methods=[route.method],
            summary=route.summary,
            tags=[route.tag],
            description=f"Served by the `{route.app_id}` app, reached through Dapr service invocation.",
        )

    @router.post(
        "/v1/chat/completions",
        tags=["openai"],
        summary="Chat completion (OpenAI-compatible), through the guard, retrieval and prompt pipeline",
        description='Extra fields: `collection` (or `model: "rag/<collection>"`) grounds the answer in '
        "that collection's documents; `prompt` names a managed prompt (`{name, label|version, variables}`). "
        "The answer adds `citations` and `lineage` (model, prompt version, trace id).",
    )
    async def chat_completions(request: Request, api_key: ApiKeyDep) -> object:
        limits = request.app.state.limits
        limits.admit(api_key)
        try:
            body = await request.json()
        except ValueError as error:
            raise Problem(422, "The body must be a JSON chat completion request.") from error
        if not isinstance(body, dict):
            raise Problem(422, "The body must be a JSON object.")
        pipeline: ChatPipeline = request.app.state.chat
        request_id = current_request_id.get() or ""
        plan = await pipeline.plan(body, request_id)
        if not body.get("stream"):
            answer = await pipeline.complete(plan, request_id)
            limits.spend(api_key, int((answer.get("usage") or {}).get("total_tokens") or 0))
            return answer

        async def events():
            meter = UsageMeter()
            try:
                async for event in pipeline.stream(plan, request_id):
                    meter.feed(event)
                    yield event
            except Problem as problem:
                # Headers are gone already: the failure travels as a last event, as OpenAI's do.
                yield f"data: {json.dumps({'error': problem.body()})}\n\n".encode()
            limits.spend(api_key, meter.total_tokens)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @router.get("/v1/system/health", tags=["system"], summary="Readiness of every app of the platform")
    async def get_system_health(request: Request, sidecar: SidecarDep, _key: ApiKeyDep) -> dict:
        settings: GatewaySettings = request.app.state.settings
        return await system_health(sidecar, settings.app_id, settings.platform_apps, settings.health_timeout_seconds)

    return router
