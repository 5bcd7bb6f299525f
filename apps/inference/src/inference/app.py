"""LLM serving: continuous batching, streaming, hot swap of model versions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import httpx
import torch
from fastapi import FastAPI

from genai_platform.dapr import DaprError
from genai_platform.idempotency import SeenEvents
from genai_platform.registry_client import RegistryClient, RegistryError
from genai_platform.service import create_service
from inference.access import ApiKey
from inference.openai_api import router as openai_router
from inference.promotion import admin, subscriptions
from inference.registry_source import RegistryNotReady, RegistryRef, fetch_from_registry
from inference.settings import InferenceSettings
from inference.swap import ModelService

log = logging.getLogger(__name__)


async def model_ready(app: FastAPI) -> str | None:
    models: ModelService = app.state.models
    if models.ready:
        return None
    return app.state.load_error or models.withdrawn or "the model is loading"


def create_app(settings: InferenceSettings) -> FastAPI:
    """The inference app: OpenAI API, `model.promoted` subscription, admin routes; the model loads in
    the background (readiness waits for it)."""

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
        routers=[openai_router, subscriptions.router, admin],
        lifespan=lifespan,
        readiness=[model_ready],
        # The OpenAI routes check their callers themselves (sidecar token or API key), see access.py.
        open_prefixes=("/v1/",),
    )
    app.state.models = ModelService(settings)
    app.state.seen_events = SeenEvents()  # model.promoted ids handled (promotion.py)
    app.state.load_error = None
    return app


async def _load_first(app: FastAPI, settings: InferenceSettings) -> None:
    try:
        registry = RegistryRef.parse(settings.model_source)
        if registry is None:
            await app.state.models.promote(settings.model_source, settings.model_version)
        else:
            folder, number = await _wait_for_registry(app, settings, registry)
            app.state.load_error = None
            await app.state.models.promote(str(folder), str(number))
        app.state.load_error = None
    except Exception as error:
        log.exception("loading the model failed", extra={"source": settings.model_source})
        app.state.load_error = f"loading the model failed: {type(error).__name__}"


async def _wait_for_registry(app: FastAPI, settings: InferenceSettings, registry: RegistryRef) -> tuple[Path, int]:
    """Fetch the referenced version, waiting while the registry starts or registers the base model."""
    delay = 0.5
    while True:
        try:
            client = RegistryClient(app.state.sidecar, settings.registry_app_id)
            return await fetch_from_registry(client, registry.name, registry.reference, settings.model_cache_dir)
        except (RegistryNotReady, RegistryError, DaprError, httpx.HTTPError) as error:
            # /readyz says why it is not ready; no log line per attempt.
            app.state.load_error = f"waiting for {registry}: {error or type(error).__name__}"
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
