"""Register a finished job's weights in the model registry, through the shared registry client.

Every step is safe to repeat: the version number is kept on the job as soon as it exists, parts
are overwritten, `complete` re-checks, `ready` and alias moves are idempotent. A supervisor that
crashed half-way simply runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

from genai_platform.artifacts import is_storable
from genai_platform.contracts.registry import Lineage, NewModel, NewVersion
from genai_platform.registry_client import RegistryClient, RegistryConflict
from training.models import Job


class RegistrationFailed(Exception):
    """Registration could not finish; the message says which step. `transient` is True when
    trying again later may work (the registry was unreachable or busy), False when it will not."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def files_to_register(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.iterdir() if is_storable(p.name))


def lineage(job: Job) -> Lineage:
    """A fine-tuned version's lineage: base version, job, dataset snapshot, settings and metrics."""
    base = job.base
    return Lineage(
        base_model=base.get("name"),
        base_version=base.get("version"),
        training_job_id=job.id,
        dataset_snapshot_id=job.dataset_snapshot_id,
        hyperparameters={
            "method": job.method.type,
            "nproc_per_node": job.nproc_per_node,
            "output_dtype": job.output_dtype,
            **job.hyperparameters.model_dump(),
        },
        metrics={**job.metrics, "trained_tokens": float(job.trained_tokens)},
    )


def _read_part(path: Path, index: int, size: int) -> bytes:
    with path.open("rb") as file:
        file.seek(index * size)
        return file.read(size)


async def register_output(
    registry: RegistryClient,
    job: Job,
    part_size: int,
    remember_version: Callable[[int], Awaitable[None]],
) -> tuple[str, int]:
    """Upload the job's output folder as a new version of `job.output_model`; returns (model, version).

    Raises the registry client's `RegistryError` family when a step is refused or fails.
    """
    name = job.output_model
    with contextlib.suppress(RegistryConflict):  # registered by an earlier job, or an earlier try of this one
        await registry.create_model(NewModel(name=name, description="Fine-tuned models"))
    number = job.result.registry_version if job.result else None
    if number is None:
        new = NewVersion(
            description=f"Fine-tuned by {job.id} ({job.method.type}) from {job.model}",
            tags={"training_job": job.id, "method": job.method.type, "base": job.model, **job.metadata},
            lineage=lineage(job),
        )
        number = (await registry.create_version(name, new)).version
        await remember_version(number)
    current = await registry.get_version(name, number)
    output_dir = Path(job.result.output_dir) if job.result else Path(job.job_dir) / "output"
    # A version made ready before a crash keeps its files: they are immutable now.
    uploads = [] if current.status == "ready" else files_to_register(output_dir)
    for path in uploads:
        size = path.stat().st_size
        parts = max(1, -(-size // part_size))
        digest = hashlib.sha256()
        for index in range(parts):
            data = await asyncio.to_thread(_read_part, path, index, part_size)
            await asyncio.to_thread(digest.update, data)
            await registry.upload_part(name, number, path.name, index, data)
        await registry.complete_file(name, number, path.name, parts, digest.hexdigest())
    await registry.mark_ready(name, number)
    if job.promote_to:
        await registry.move_alias(name, job.promote_to, number)
    return name, number
