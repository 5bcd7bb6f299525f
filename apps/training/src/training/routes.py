"""The training API (OpenAI-shaped): files, fine-tuning jobs, their events and checkpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import BaseModel

from genai_platform.errors import Problem, problem_responses
from genai_platform.paths import ResourceId
from genai_platform.service import SidecarDep
from training.datasets import InvalidDataset, parse_chat_jsonl
from training.jobs import submit_job
from training.models import ACTIVE, Checkpoint, FileObject, Job, JobEvent, NewJob
from training.settings import TrainingSettings
from training.store import TrainingStore
from training.supervisor import Supervisor

files_router = APIRouter(prefix="/v1/files", tags=["files"])
jobs_router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


async def get_store(request: Request) -> TrainingStore:
    """Dependency: the store of files, jobs and events."""
    return request.app.state.store


async def get_supervisor(request: Request) -> Supervisor:
    """Dependency: the supervisor that runs and watches the workers."""
    return request.app.state.supervisor


async def get_training_settings(request: Request) -> TrainingSettings:
    """Dependency: the training service's settings."""
    return request.app.state.settings


StoreDep = Annotated[TrainingStore, Depends(get_store)]
SupervisorDep = Annotated[Supervisor, Depends(get_supervisor)]
TrainingSettingsDep = Annotated[TrainingSettings, Depends(get_training_settings)]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """OpenAI's list answer: `data` in the route's order; `has_more` when `limit` cut it short."""

    object: Literal["list"]
    data: list[T]
    has_more: bool


def page(items: list[Any], limit: int, after: str | None) -> dict[str, Any]:
    """OpenAI's list shape: `data` after the item with id `after`, `has_more` when cut."""
    if after is not None:
        ids = [item.id for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}


# --- files --------------------------------------------------------------------------------------


@files_router.post("", summary="Upload a JSONL file of chat examples for fine-tuning")
async def upload_file(
    store: StoreDep,
    settings: TrainingSettingsDep,
    file: Annotated[UploadFile, File(description='One {"messages": [...]} object per line')],
    purpose: Annotated[str, Form()] = "fine-tune",
) -> FileObject:
    if purpose != "fine-tune":
        raise Problem(
            422,
            "Only purpose 'fine-tune' is accepted here.",
            errors=[{"location": "body.purpose", "message": "only 'fine-tune' is accepted"}],
        )
    data = await file.read(settings.max_file_bytes + 1)
    if len(data) > settings.max_file_bytes:
        raise Problem(
            413, f"A training file holds at most {settings.max_file_bytes} bytes.", max_bytes=settings.max_file_bytes
        )
    try:
        dataset = await asyncio.to_thread(parse_chat_jsonl, data)
    except InvalidDataset as invalid:
        first = invalid.problems[0]
        raise Problem(
            422,
            f"The file is not valid chat JSONL: {first}"
            + (f" (and {invalid.total - 1} more problems)" if invalid.total > 1 else ""),
            title="Invalid training file",
            line=first.line,
            problems=[{"line": p.line, "message": p.message} for p in invalid.problems],
            # The shape of every 422 (genai_platform.errors.ValidationProblemDetails): where, and why.
            errors=[{"location": f"file.line.{p.line}", "message": p.message} for p in invalid.problems],
        ) from invalid
    return await store.create_file(file.filename or "training.jsonl", len(data), dataset)


@files_router.get("", summary="Uploaded training files", response_model=Page[FileObject])
async def list_files(store: StoreDep) -> dict[str, Any]:
    files = await store.list_files()
    return {"object": "list", "data": files, "has_more": False}


@files_router.get("/{file_id}", summary="One uploaded training file", responses=problem_responses(404))
async def get_file(file_id: ResourceId, store: StoreDep) -> FileObject:
    file, _ = await store.get_file(file_id)
    return file


# --- jobs ---------------------------------------------------------------------------------------


@jobs_router.post("", summary="Create a fine-tuning job (LoRA or full) on an uploaded file")
async def create_job(new: NewJob, store: StoreDep, supervisor: SupervisorDep, sidecar: SidecarDep) -> Job:
    return await submit_job(new, store, supervisor, sidecar)


@jobs_router.get("", summary="Fine-tuning jobs, newest first", response_model=Page[Job])
async def list_jobs(
    store: StoreDep, limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None
) -> dict[str, Any]:
    return page(await store.list_jobs(), limit, after)


@jobs_router.get("/{job_id}", summary="One fine-tuning job", responses=problem_responses(404))
async def get_job(job_id: ResourceId, store: StoreDep) -> Job:
    return await store.get_job(job_id)


@jobs_router.post("/{job_id}/cancel", summary="Cancel a queued or running job", responses=problem_responses(404, 409))
async def cancel_job(job_id: ResourceId, store: StoreDep, supervisor: SupervisorDep) -> Job:
    job = await store.get_job(job_id)
    if job.status not in ACTIVE:
        raise Problem(409, f"Job '{job_id}' has {job.status} already; there is nothing to cancel.", title="Conflict")
    return await supervisor.cancel(job_id)


@jobs_router.get(
    "/{job_id}/events",
    summary="A job's events, newest first: steps with loss, lr, tokens/s",
    response_model=Page[JobEvent],
    responses=problem_responses(404),
)
async def list_events(
    job_id: ResourceId, store: StoreDep, limit: Annotated[int, Query(ge=1, le=2000)] = 100, after: str | None = None
) -> dict[str, Any]:
    await store.get_job(job_id)
    events, _ = await store.read_events(job_id)
    return page(list(reversed(events)), limit, after)


@jobs_router.get(
    "/{job_id}/checkpoints",
    summary="A job's kept checkpoints, newest first",
    response_model=Page[Checkpoint],
    responses=problem_responses(404),
)
async def list_checkpoints(job_id: ResourceId, store: StoreDep) -> dict[str, Any]:
    job = await store.get_job(job_id)
    checkpoints = await asyncio.to_thread(read_checkpoints, job)
    return {"object": "list", "data": checkpoints, "has_more": False}


def read_checkpoints(job: Job) -> list[Checkpoint]:
    """The job's kept checkpoints, newest first, read from its folder (blocking: run on a thread);
    one being written or removed right now is left out."""
    folder = Path(job.job_dir) / "checkpoints"
    found = []
    for path in sorted(folder.glob("step-*"), reverse=True) if folder.exists() else []:
        try:
            state = json.loads((path / "state.json").read_text())
        except (OSError, ValueError):
            continue  # being written or removed right now
        found.append(
            Checkpoint(
                id=f"ftckpt-{job.id.removeprefix('ftjob-')[:12]}-{state['step']}",
                created_at=int(path.stat().st_mtime),
                fine_tuning_job_id=job.id,
                step_number=state["step"],
                metrics={"train_loss": state["loss"]},
                path=str(path),
                bytes=sum(f.stat().st_size for f in path.iterdir()),
            )
        )
    return found
