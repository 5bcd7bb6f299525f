"""The single entry point: API keys, routing through Dapr, the OpenAI-compatible front door."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request

from gateway.api_keys import ApiKeyDep, ApiKeys
from gateway.settings import GatewaySettings
from gateway.system import system_health
from genai_platform.service import SidecarDep, create_service

system = APIRouter(prefix="/v1/system", tags=["system"])


@system.get("/health", summary="Readiness of every app of the platform, through Dapr")
async def get_system_health(request: Request, sidecar: SidecarDep, _key: ApiKeyDep) -> dict:
    settings: GatewaySettings = request.app.state.settings
    return await system_health(sidecar, settings.app_id, settings.platform_apps, settings.health_timeout_seconds)


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.api_keys = ApiKeys(app.state.sidecar, settings.api_keys_secret, settings.api_keys_ttl_seconds)
        yield

    return create_service(
        settings,
        title="GenAI platform API",
        description=__doc__,
        routers=[system],
        lifespan=lifespan,
        # Clients call the public API directly, with API keys instead of the sidecar's token.
        open_prefixes=("/v1/", "/docs", "/openapi.json"),
    )
