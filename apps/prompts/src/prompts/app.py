"""Prompt templates with immutable versions, labels and typed variables."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.idempotency import SeenEvents
from genai_platform.service import create_service
from genai_platform.startup import StartupWork, startup_done
from prompts.cache import RenderCache
from prompts.routes import prompts, subscriptions
from prompts.seed import seed_rag_prompt
from prompts.settings import PromptsSettings
from prompts.store import PromptStore


def create_app(settings: PromptsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = PromptStore(app.state.sidecar)
        app.state.render_cache = RenderCache(settings.render_cache_size, settings.render_cache_ttl_s)
        app.state.seen_events = SeenEvents(settings.render_cache_size * 4)
        if settings.rag_prompt:
            # Not ready until the RAG prompt is seeded: the gateway's first grounded answer needs it.
            name = settings.rag_prompt
            app.state.startup = StartupWork(
                f"seeding the {name!r} prompt", lambda: seed_rag_prompt(app.state.store, name)
            )
            app.state.startup.start(app.state.sidecar)
        try:
            yield
        finally:
            if settings.rag_prompt:
                await app.state.startup.stop()

    return create_service(
        settings,
        title="Prompts",
        description=__doc__,
        routers=[prompts, subscriptions.router],
        lifespan=lifespan,
        readiness=[startup_done],
    )
