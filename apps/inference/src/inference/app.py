"""LLM serving: continuous batching, streaming, hot swap of model versions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import torch
from fastapi import FastAPI

from genai_platform.service import create_service
from inference.access import ApiKey
from inference.openai_api import router as openai_router
from inference.promotion import SeenEvents, admin, subscriptions
from inference.settings import InferenceSettings
from inference.swap import ModelService

log = logging.getLogger(__name__)


async def model_ready(app: FastAPI) -> str | None:
    models: ModelService = app.state.models
    if models.ready:
        return None
    return app.state.load_error or "the model is loading"


def create_app(settings: InferenceSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        app.state.api_key = ApiKey(app.state.sidecar, settings.api_key_secret)
        # Loading runs in the background: /healthz answers at once and /readyz says "loading"
        # until the model has loaded and warmed up.
        loading = asyncio.create_task(_load_first(app, settings))
        try:
            yield
        finally:
            loading.cancel()
            with suppress(asyncio.CancelledError):
                await loading
            await app.state.models.close()

    app = create_service(
        settings,
        title="Inference",
        description=__doc__,
        routers=[openai_router, subscriptions, admin],
        lifespan=lifespan,
        readiness=[model_ready],
        # The OpenAI routes check their callers themselves (sidecar token or API key), see access.py.
        open_prefixes=("/v1/",),
    )
    app.state.models = ModelService(settings)
    app.state.seen_events = SeenEvents()
    app.state.load_error = None
    return app


async def _load_first(app: FastAPI, settings: InferenceSettings) -> None:
    try:
        await app.state.models.promote(settings.model_source, settings.model_version)
    except Exception as error:
        log.exception("loading the model failed", extra={"source": settings.model_source})
        app.state.load_error = f"loading the model failed: {type(error).__name__}"
