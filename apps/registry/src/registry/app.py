"""Models, versions, aliases, lineage and artifacts."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from registry.artifacts import ArtifactStore
from registry.catalog import Catalog
from registry.routes import router
from registry.seed import seed_base_model
from registry.settings import RegistrySettings

log = logging.getLogger(__name__)


async def seeded(app: FastAPI) -> str | None:
    return app.state.seeding


def create_app(settings: RegistrySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        artifacts = ArtifactStore(app.state.sidecar, settings.blob_binding, settings.part_size_bytes)
        app.state.catalog = Catalog(app.state.sidecar, artifacts)
        app.state.seeding = None
        seeding = None
        if settings.seed_dir is not None:
            app.state.seeding = "registering the base model"
            seeding = asyncio.create_task(_seed(app, settings))
        try:
            yield
        finally:
            if seeding is not None:
                seeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await seeding

    return create_service(
        settings,
        title="Model registry",
        description=__doc__,
        routers=[router],
        lifespan=lifespan,
        readiness=[seeded],
    )


async def _seed(app: FastAPI, settings: RegistrySettings) -> None:
    """Register the base model once the sidecar answers; retried while the store is unreachable."""
    assert settings.seed_dir is not None
    delay = 0.5
    while True:
        try:
            if await app.state.sidecar.is_ready():
                await seed_base_model(app.state.catalog, app.state.sidecar, settings.seed_model, settings.seed_dir)
                app.state.seeding = None
                return
        except FileNotFoundError as error:
            log.error("the base model cannot be registered: %s", error)
            app.state.seeding = f"the base model cannot be registered: {error}"
            return
        except Exception:
            log.exception("registering the base model failed; retrying")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
