"""Prompt templates with immutable versions, labels and typed variables."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from prompts.cache import RenderCache
from prompts.routes import prompts, subscriptions
from prompts.seed import seed_rag_prompt
from prompts.settings import PromptsSettings
from prompts.store import PromptStore

log = logging.getLogger(__name__)


async def seeded(app: FastAPI) -> str | None:
    """Not ready until the RAG prompt is seeded: the gateway's first grounded answer needs it."""
    return app.state.seeding


def create_app(settings: PromptsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = PromptStore(app.state.sidecar)
        app.state.render_cache = RenderCache(settings.render_cache_size, settings.render_cache_ttl_s)
        app.state.seeding = None
        seeding = None
        if settings.rag_prompt:
            app.state.seeding = f"seeding the {settings.rag_prompt!r} prompt"
            seeding = asyncio.create_task(_seed(app, settings.rag_prompt))
        try:
            yield
        finally:
            if seeding is not None:
                seeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await seeding

    return create_service(
        settings,
        title="Prompts",
        description=__doc__,
        routers=[prompts, subscriptions],
        lifespan=lifespan,
        readiness=[seeded],
    )


async def _seed(app: FastAPI, name: str) -> None:
    """Seed the RAG prompt once the sidecar answers; retried while the state store is unreachable."""
    delay = 0.5
    while True:
        try:
            if await app.state.sidecar.is_ready():
                await seed_rag_prompt(app.state.store, name)
                app.state.seeding = None
                return
        except Exception:
            log.exception("seeding the rag prompt failed; retrying")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
