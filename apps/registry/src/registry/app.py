"""Models, versions, aliases, lineage and artifacts."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from registry.artifacts import ArtifactStore
from registry.catalog import Catalog
from registry.routes import router
from registry.settings import RegistrySettings


def create_app(settings: RegistrySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        artifacts = ArtifactStore(app.state.sidecar, settings.blob_binding, settings.part_size_bytes)
        app.state.catalog = Catalog(app.state.sidecar, artifacts)
        yield

    return create_service(settings, title="Model registry", description=__doc__, routers=[router], lifespan=lifespan)
