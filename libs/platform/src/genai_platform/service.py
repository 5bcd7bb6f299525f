"""The app factory every service is built with, and the entry point that runs it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp

from genai_platform.api_docs import install_api_docs
from genai_platform.dapr import Sidecar
from genai_platform.errors import document_problems, install_error_handlers
from genai_platform.logs import configure_logging
from genai_platform.metrics import RequestMetricsMiddleware, metrics_response
from genai_platform.requests import RequestIdMiddleware
from genai_platform.security import OPEN_PATHS, AppTokenMiddleware
from genai_platform.settings import ServiceSettings
from genai_platform.telemetry import configure_tracing, instrument_app, instrument_client
from genai_platform.text import MAX_BODY_BYTES, UnicodeTextMiddleware

log = logging.getLogger(__name__)

# A readiness check answers None when ready, or a short reason when not.
ReadinessCheck = Callable[[FastAPI], Awaitable[str | None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


async def sidecar_ready(app: FastAPI) -> str | None:
    """Readiness check: None once daprd has loaded its components, else the reason."""
    return None if await app.state.sidecar.is_ready() else "the Dapr sidecar is not ready"


class PlatformApp(FastAPI):
    """A FastAPI app whose request id (`RequestIdMiddleware`) wraps every other layer.

    Starlette builds its stack as ServerErrorMiddleware (which answers an unhandled error with
    the 500) -> added middleware, last added outermost -> routes. A request id added there is
    missing from that 500 and from the answers of any middleware a service adds after
    `create_service` (the gateway's 413/431 and CORS). So the id goes outside the whole stack.
    """

    def build_middleware_stack(self) -> ASGIApp:
        """The stack with the request id outermost, inside a plain ServerErrorMiddleware.

        That outer ServerErrorMiddleware only sees errors of the request-id layer itself (the
        inner one has already answered); it keeps the shape OpenTelemetry's FastAPI
        instrumentation re-wraps (it skips an app whose outermost layer is anything else).
        """
        return ServerErrorMiddleware(RequestIdMiddleware(super().build_middleware_stack()))


def create_service(
    settings: ServiceSettings,
    *,
    title: str,
    description: str = "",
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    readiness: Sequence[ReadinessCheck] = (),
    open_prefixes: tuple[str, ...] = (),
    edge_middleware: Sequence[tuple[type, dict[str, Any]]] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build a service: health, readiness, metrics, errors, tracing, API docs and the app-token check.

    `lifespan` opens the service's own resources (models, caches) once the sidecar client
    exists; `readiness` adds the service's own conditions to /readyz. `open_prefixes` are paths
    served to callers other than the sidecar (a gateway's public API), exempt from the app token.
    `edge_middleware` (class, keyword arguments), outermost first, runs before the app token and
    everything else, but inside the request metrics and tracing, so what it answers itself (the
    gateway's 413 and 431) is counted, logged and traced with its real status. `max_body_bytes` is
    the largest JSON or form body the app reads (a 413 past it, genai_platform.text): by default
    daprd's own limit, for an app whose requests come through its sidecar.
    """

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.sidecar = Sidecar(settings)
        instrument_client(app.state.sidecar.http)
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            await app.state.sidecar.aclose()

    # FastAPI's own /docs and /redoc load their scripts from CDNs: off, and /docs served from here.
    app = PlatformApp(title=title, description=description, lifespan=_lifespan, docs_url=None, redoc_url=None)
    install_api_docs(app)
    install_error_handlers(app)
    document_problems(app)
    checks: list[ReadinessCheck] = [sidecar_ready, *readiness]

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the sidecar and the service's own needs")
    async def readyz() -> JSONResponse:
        reasons = [reason for check in checks if (reason := await check(app)) is not None]
        body: dict[str, Any] = {"app_id": settings.app_id, "ready": not reasons, "reasons": reasons}
        return JSONResponse(body, status_code=200 if not reasons else 503)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    async def metrics() -> Any:
        return metrics_response()

    for router in routers:
        app.include_router(router)

    # Innermost: a request that passed the token and the edge (the gateway's size limits) is read
    # for text that is not Unicode before any route sees it (genai_platform.text).
    app.add_middleware(UnicodeTextMiddleware, limit_bytes=max_body_bytes)
    if settings.app_api_token is not None:
        app.add_middleware(
            AppTokenMiddleware,
            token=settings.app_api_token.get_secret_value(),
            open_paths=OPEN_PATHS,
            open_prefixes=open_prefixes,
        )
    for middleware, options in reversed(edge_middleware):
        app.add_middleware(middleware, **options)
    app.add_middleware(RequestMetricsMiddleware, app_id=settings.app_id)
    instrument_app(app)
    return app


async def get_sidecar(request: Request) -> Sidecar:
    """Dependency: the app's `Sidecar` client (opened by the lifespan)."""
    return request.app.state.sidecar


async def get_settings(request: Request) -> ServiceSettings:
    """Dependency: the settings the app was built with."""
    return request.app.state.settings


SidecarDep = Annotated[Sidecar, Depends(get_sidecar)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


def run(settings_type: type[ServiceSettings], factory: Callable[[Any], FastAPI]) -> None:
    """The entry point of every service: settings, logging and tracing once, then serve."""
    settings = settings_type()
    configure_logging(settings.app_id, settings.log_level)
    configure_tracing(settings.app_id, settings.zipkin_endpoint)
    log.info("starting", extra={"port": settings.port, "environment": str(settings.environment)})
    uvicorn.run(
        factory(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Longer than the idle timeout of daprd's pooled connections (Go's 90 s), so the sidecar never
        # reuses a connection the app is closing ("use of closed network connection").
        timeout_keep_alive=120,
    )
