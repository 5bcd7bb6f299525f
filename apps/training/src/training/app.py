"""Fine-tuning jobs: LoRA and full, checkpointed and resumable, run in worker processes."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from training.routes import files_router, jobs_router
from training.settings import TrainingSettings
from training.store import TrainingStore
from training.supervisor import Supervisor
from training.workflow import ACTIVITIES, create_runtime
from training.workflow_routes import router as workflow_router

log = logging.getLogger(__name__)


def create_app(settings: TrainingSettings) -> FastAPI:
    """The training app: files and jobs API, workflows; its lifespan resumes unfinished jobs once the sidecar is up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = TrainingStore(app.state.sidecar)
        app.state.supervisor = Supervisor(settings, app.state.sidecar, app.state.store)

        async def resume_when_ready() -> None:
            # The sidecar starts after the app (it waits for the app's port): poll, then take up
            # the jobs a previous run of this app left unfinished.
            while not await app.state.sidecar.is_ready():  # noqa: ASYNC110 (another process: no event to await)
                await asyncio.sleep(0.5)
            ACTIVITIES.bind(
                asyncio.get_running_loop(), settings, app.state.sidecar, app.state.store, app.state.supervisor
            )
            try:
                resumed = await app.state.supervisor.resume_all()
                if resumed:
                    log.info("resumed unfinished jobs", extra={"jobs": resumed})
            except Exception:
                log.exception("could not resume unfinished jobs")
            # Workflows replay and continue from here on (their history is in the sidecar).
            try:
                await asyncio.to_thread(workflows.start)
            except Exception:
                # Jobs do not need workflows: a sidecar without placement/scheduler still trains.
                log.exception("the workflow worker did not start; fine-tune-and-promote workflows will wait")

        workflows = create_runtime(settings)
        resumer = asyncio.create_task(resume_when_ready())
        try:
            yield
        finally:
            resumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resumer
            await asyncio.to_thread(workflows.shutdown)
            await app.state.supervisor.close()

    return create_service(
        settings,
        title="Training",
        description=__doc__,
        routers=[files_router, jobs_router, workflow_router],
        lifespan=lifespan,
    )
