"""Register a finished job's weights in the model registry, through Dapr service invocation.

Every step is safe to repeat: the version number is kept on the job as soon as it exists, parts
are overwritten, `complete` re-checks, `ready` and alias moves are idempotent. A supervisor that
crashed half-way simply runs it again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from genai_platform.artifacts import is_storable
from training.base_models import RegistryClient
from training.models import Job


class RegistrationFailed(Exception):
    """The registry refused or failed a step; the message says which."""


def files_to_register(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.iterdir() if is_storable(p.name))


def lineage(job: Job) -> dict[str, Any]:
    base = job.base
    return {
        "base_model": base.get("name"),
        "base_version": base.get("version"),
        "training_job_id": job.id,
        "dataset_snapshot_id": job.dataset_snapshot_id,
        "hyperparameters": {
            "method": job.method.type,
            "nproc_per_node": job.nproc_per_node,
            "output_dtype": job.output_dtype,
            **job.hyperparameters.model_dump(),
        },
        "metrics": {**job.metrics, "trained_tokens": float(job.trained_tokens)},
    }


def _read_part(path: Path, index: int, size: int) -> bytes:
    with path.open("rb") as file:
        file.seek(index * size)
        return file.read(size)


async def _expect(response, what: str, ok: tuple[int, ...] = (200, 201)) -> Any:
    if response.status_code not in ok:
        detail = response.text[:300]
        raise RegistrationFailed(f"{what}: the registry answered {response.status_code} {detail}")
    return response.json() if response.content else None


async def register_output(
    registry: RegistryClient,
    job: Job,
    part_size: int,
    remember_version: Callable[[int], Awaitable[None]],
) -> tuple[str, int]:
    """Upload the job's output folder as a new version of `job.output_model`; returns (model, version)."""
    name = job.output_model
    response = await registry.call("POST", "v1/models", json_body={"name": name, "description": "Fine-tuned models"})
    await _expect(response, f"creating model '{name}'", ok=(201, 409))
    number = job.result.registry_version if job.result else None
    if number is None:
        body = {
            "description": f"Fine-tuned by {job.id} ({job.method.type}) from {job.model}",
            "tags": {"training_job": job.id, "method": job.method.type, "base": job.model, **job.metadata},
            "lineage": lineage(job),
        }
        version = await _expect(await registry.call("POST", f"v1/models/{name}/versions", json_body=body), "a version")
        number = int(version["version"])
        await remember_version(number)
    current = await _expect(await registry.call("GET", f"v1/models/{name}/versions/{number}"), "reading the version")
    output_dir = Path(job.result.output_dir) if job.result else Path(job.job_dir) / "output"
    # A version made ready before a crash keeps its files: they are immutable now.
    uploads = [] if current["status"] == "ready" else files_to_register(output_dir)
    for path in uploads:
        size = path.stat().st_size
        parts = max(1, -(-size // part_size))
        digest = hashlib.sha256()
        base = f"v1/models/{name}/versions/{number}/files/{path.name}"
        for index in range(parts):
            data = await asyncio.to_thread(_read_part, path, index, part_size)
            await asyncio.to_thread(digest.update, data)
            response = await registry.call("PUT", f"{base}/parts/{index}", content=data, timeout=120)
            await _expect(response, f"part {index} of {path.name}")
        response = await registry.call(
            "POST", f"{base}/complete", json_body={"parts": parts, "sha256": digest.hexdigest()}, timeout=300
        )
        await _expect(response, f"completing {path.name}")
    await _expect(await registry.call("POST", f"v1/models/{name}/versions/{number}/ready"), "marking the version ready")
    if job.promote_to:
        response = await registry.call(
            "PUT", f"v1/models/{name}/aliases/{job.promote_to}", json_body={"version": number}
        )
        await _expect(response, f"moving alias '{job.promote_to}'")
    return name, number
