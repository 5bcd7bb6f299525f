"""Models, versions, aliases, lineage and artifacts."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from genai_platform.startup import StartupWork, startup_done
from registry.artifacts import ArtifactStore
from registry.catalog import Catalog
from registry.routes import router
from registry.seed import seed_base_model
from registry.settings import RegistrySettings

log = logging.getLogger(__name__)


def create_app(settings: RegistrySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        artifacts = ArtifactStore(app.state.sidecar, settings.blob_binding, settings.part_size_bytes)
        app.state.catalog = Catalog(app.state.sidecar, artifacts)
        if settings.seed_dir is not None:
            seed_dir = settings.seed_dir
            # Not ready until the base model is registered: inference serves it from here.
            app.state.startup = StartupWork(
                "registering the base model",
                lambda: seed_base_model(app.state.catalog, app.state.sidecar, settings.seed_model, seed_dir),
                fatal=(FileNotFoundError,),  # no converted weights: `make setup` has not run; retrying cannot help
            )
            app.state.startup.start(app.state.sidecar)
        try:
            yield
        finally:
            if settings.seed_dir is not None:
                await app.state.startup.stop()

    return create_service(
        settings,
        title="Model registry",
        description=__doc__,
        routers=[router],
        lifespan=lifespan,
        readiness=[startup_done],
    )
