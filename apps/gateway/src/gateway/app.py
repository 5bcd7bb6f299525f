"""The single entry point: API keys, limits, and the platform's public API relayed through Dapr."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.api_keys import ApiKeys
from gateway.chat import ChatPipeline, PipelineSettings
from gateway.limits import Limits, SizeLimitMiddleware, SizeLimits
from gateway.openai_errors import OpenAIErrorMiddleware
from gateway.openapi import PlatformOpenApi
from gateway.routes import public_router, schema_app_paths, schema_sources
from gateway.settings import GatewaySettings
from gateway.usage import UsageLedger
from genai_platform.service import create_service


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app: API keys, limits, the chat pipeline and the merged OpenAPI document opened by its lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.api_keys = ApiKeys(app.state.sidecar, settings.api_keys_secret, settings.api_keys_ttl_seconds)
        app.state.api_keys.expire_on_sighup()
        app.state.limits = Limits(settings.requests_per_minute)
        app.state.usage = UsageLedger(app.state.sidecar, settings.tokens_per_day)
        app.state.chat = ChatPipeline(
            app.state.sidecar,
            PipelineSettings(
                rag_prompt=settings.rag_prompt,
                retrieval_k=settings.retrieval_k,
                timeout=settings.request_timeout_seconds,
                generation_timeout=settings.generation_timeout_seconds,
                guard_stream_window_s=settings.guard_stream_window_ms / 1000,
                max_tokens=settings.max_tokens,
            ),
        )
        app.state.openapi = PlatformOpenApi(
            app.state.sidecar,
            app.openapi,
            schema_sources(),
            ttl=settings.openapi_ttl_seconds,
            timeout=settings.openapi_timeout_seconds,
            app_paths=schema_app_paths(),
        )
        yield

    limits = SizeLimits(
        model_body=settings.max_model_body_bytes,
        upload_body=settings.max_upload_body_bytes,
        body=settings.max_body_bytes,
        header=settings.max_header_bytes,
    )
    app = create_service(
        settings,
        title="GenAI platform API",
        description=__doc__,
        routers=[public_router()],
        lifespan=lifespan,
        # Clients call the public API directly, with API keys instead of the sidecar's token.
        open_prefixes=("/v1/", "/docs", "/openapi.json"),
        # OpenAI's `error` object on every problem+json answer, the size limits' own included.
        # The size limits come before any work (an oversized request reaches neither the key check
        # nor a sidecar), but inside the request metrics: a 413 or 431 is counted and logged as
        # what it is (a chunked body over the limit was counted as a 500, one with Content-Length
        # not at all).
        edge_middleware=[(OpenAIErrorMiddleware, {}), (SizeLimitMiddleware, {"limits": limits})],
    )
    # CORS outermost: a browser still reads the 413, which carries CORS headers.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "DELETE"],
        allow_headers=["authorization", "content-type", "x-api-key", "x-request-id"],
        expose_headers=["x-request-id", "retry-after", "server-timing"],
    )
    return app
