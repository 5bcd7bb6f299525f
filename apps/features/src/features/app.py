"""Feature engineering: embeddings, keyword statistics, vector and keyword search."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from features.embedding import Embedder
from features.index import ChunkIndex, IndexStore
from features.indexer import Indexer
from features.routes import api, subscriptions
from features.settings import FeaturesSettings
from genai_platform.idempotency import SeenEvents
from genai_platform.service import create_service

log = logging.getLogger(__name__)


async def ready(app: FastAPI) -> str | None:
    if getattr(app.state, "embedder", None) is None:
        return "the embedding model is not loaded"
    if not getattr(app.state, "index_rebuilt", False):
        return "the index is not rebuilt yet"
    return None


async def _wait_for_sidecar(app: FastAPI, timeout: float) -> None:
    # The index lives in the state store: rebuilding needs the sidecar's outbound side, which
    # daprd serves before it starts delivering events to this app.
    deadline = time.monotonic() + timeout
    while not await app.state.sidecar.is_ready():
        if time.monotonic() > deadline:
            raise RuntimeError("the Dapr sidecar did not become ready; cannot rebuild the index")
        await asyncio.sleep(0.2)


def create_app(settings: FeaturesSettings) -> FastAPI:
    """The features app: its lifespan loads the embedding model and rebuilds the index from Dapr state
    before the port opens."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Model and index before the port opens: daprd subscribes this app only once it
        # listens, so no event arrives at a half-started service.
        app.state.index_rebuilt = False
        embedder = await Embedder.load(
            settings.resolved_model(),
            name=settings.model_name,
            batch_size=settings.batch_size,
            device=settings.device,
            dtype=settings.dtype,
        )
        app.state.embedder = embedder
        app.state.index = ChunkIndex(embedder.dimensions)
        store = app.state.index_store = IndexStore(app.state.sidecar)
        await _wait_for_sidecar(app, settings.sidecar_wait_s)
        await store.load(app.state.index)
        app.state.index_rebuilt = True
        app.state.indexer = Indexer(app.state.sidecar, embedder, app.state.index, store)
        # Kept in Dapr state: a restarted features must still answer redeliveries from its ledger.
        app.state.seen_events = SeenEvents(sidecar=app.state.sidecar, consumer=settings.app_id)
        log.info(
            "ready",
            extra={
                "chunks": len(app.state.index),
                "device": embedder.device,
                "dtype": embedder.dtype,
                "batch_size": embedder.batch_size,
            },
        )
        try:
            yield
        finally:
            embedder.close()

    return create_service(
        settings,
        title="Features",
        description=__doc__,
        routers=[api, subscriptions.router],
        lifespan=lifespan,
        readiness=[ready],
    )
