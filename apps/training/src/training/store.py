"""Training files, jobs and job events in Dapr state.

One key per file, per job and per job's event log, plus an index of ids for listing. Updates
to a job re-read it and write under its ETag, so the supervisor and a cancel request never
overwrite each other.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from genai_platform.dapr import Sidecar, with_etag_retries
from training.datasets import ChatDataset
from training.errors import JobNotFound, TrainingFileNotFound
from training.models import FileObject, Job, JobEvent

FILES_INDEX = "files"
JOBS_INDEX = "jobs"
# The event log of a job keeps its newest entries; a step event is ~300 bytes.
MAX_EVENTS = 2000


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def file_key(file_id: str) -> str:
    return f"file:{file_id}"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def events_key(job_id: str) -> str:
    return f"job:{job_id}:events"


class TrainingStore:
    """Training files, jobs and job events in Dapr state.

    Raises `TrainingFileNotFound` and `JobNotFound` (training.errors), `ConcurrentUpdate` when
    an ETag race is lost too often, and `DaprError` when the sidecar fails.
    """

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar

    async def _add_to_index(self, index: str, item_id: str) -> None:
        async def add() -> None:
            current = await self._sidecar.get_state(index)
            ids = list(current.value) if current else []
            if item_id not in ids:
                ids.append(item_id)
            await self._sidecar.save_state(
                index, ids, etag=current.etag if current else None, concurrency="first-write"
            )

        await with_etag_retries(add)

    # --- files --------------------------------------------------------------------------------

    async def create_file(
        self, filename: str, size: int, dataset: ChatDataset, *, file_id: str | None = None
    ) -> FileObject:
        """Store a checked training file; with `file_id`, one already stored under it is returned."""
        if file_id is not None and (item := await self._sidecar.get_state(file_key(file_id))) is not None:
            return FileObject(**item.value["file"])
        file = FileObject(
            id=file_id or new_id("file"),
            bytes=size,
            filename=filename,
            examples=len(dataset.examples),
            sha256=dataset.snapshot_id,
        )
        await self._sidecar.save_state(file_key(file.id), {"file": file.model_dump(), "jsonl": dataset.to_jsonl()})
        await self._add_to_index(FILES_INDEX, file.id)
        return file

    async def get_file(self, file_id: str) -> tuple[FileObject, str]:
        """The file's record and its examples as canonical JSONL."""
        item = await self._sidecar.get_state(file_key(file_id))
        if item is None:
            raise TrainingFileNotFound(f"There is no training file '{file_id}'.")
        return FileObject(**item.value["file"]), item.value["jsonl"]

    async def list_files(self) -> list[FileObject]:
        index = await self._sidecar.get_state(FILES_INDEX)
        ids = index.value if index else []
        found = await self._sidecar.get_bulk_state([file_key(i) for i in ids])
        return [FileObject(**found[file_key(i)]["file"]) for i in ids if file_key(i) in found]

    # --- jobs ---------------------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        await self._sidecar.save_state(job_key(job.id), job.model_dump())
        await self._add_to_index(JOBS_INDEX, job.id)
        return job

    async def get_job(self, job_id: str) -> Job:
        job = await self.find_job(job_id)
        if job is None:
            raise JobNotFound(f"There is no fine-tuning job '{job_id}'.")
        return job

    async def find_job(self, job_id: str) -> Job | None:
        item = await self._sidecar.get_state(job_key(job_id))
        return Job(**item.value) if item is not None else None

    async def update_job(self, job_id: str, change: Callable[[Job], Any]) -> Job:
        """Apply `change` to the newest record and write it under its ETag (retried on a race)."""

        async def attempt() -> Job:
            item = await self._sidecar.get_state(job_key(job_id))
            if item is None:
                raise JobNotFound(f"There is no fine-tuning job '{job_id}'.")
            job = Job(**item.value)
            change(job)
            await self._sidecar.save_state(job_key(job_id), job.model_dump(), etag=item.etag, concurrency="first-write")
            return job

        return await with_etag_retries(attempt)

    async def list_jobs(self) -> list[Job]:
        """Every job, newest first."""
        index = await self._sidecar.get_state(JOBS_INDEX)
        ids = list(reversed(index.value)) if index else []
        found = await self._sidecar.get_bulk_state([job_key(i) for i in ids])
        return [Job(**found[job_key(i)]) for i in ids if job_key(i) in found]

    # --- events -------------------------------------------------------------------------------

    async def read_events(self, job_id: str) -> tuple[list[JobEvent], int]:
        """A job's events (oldest first) and how far into the worker's progress file they go."""
        item = await self._sidecar.get_state(events_key(job_id))
        if item is None:
            return [], 0
        return [JobEvent(**e) for e in item.value["events"]], item.value["offset"]

    async def append_events(self, job_id: str, events: list[JobEvent], offset: int) -> None:
        """Add events and the progress-file offset they reach in one write, so a crash between
        reading the file and recording it never duplicates or loses an event."""
        item = await self._sidecar.get_state(events_key(job_id))
        stored = item.value["events"] if item else []
        stored = [*stored, *(e.model_dump() for e in events)][-MAX_EVENTS:]
        await self._sidecar.save_state(events_key(job_id), {"events": stored, "offset": offset})
