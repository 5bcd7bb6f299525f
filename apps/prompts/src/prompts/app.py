"""Prompt templates with immutable versions, labels and typed variables."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from prompts.cache import RenderCache
from prompts.routes import prompts, subscriptions
from prompts.settings import PromptsSettings
from prompts.store import PromptStore


def create_app(settings: PromptsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = PromptStore(app.state.sidecar)
        app.state.render_cache = RenderCache(settings.render_cache_size, settings.render_cache_ttl_s)
        yield

    return create_service(
        settings, title="Prompts", description=__doc__, routers=[prompts, subscriptions], lifespan=lifespan
    )
