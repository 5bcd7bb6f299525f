"""Submitting a fine-tuning job: everything is checked before anything starts.

The jobs API and the fine-tune-and-promote workflow both submit through here; the workflow
names the job id itself, so submitting again after a crash finds the job instead of starting
a second one.
"""

from __future__ import annotations

import asyncio

from genai_models.files import ModelFilesMissing
from genai_platform.dapr import Sidecar
from genai_platform.events import Topic, TrainingRequested
from training.base_models import describe_packaged, resolve_base
from training.collections import snapshot_collection
from training.errors import BaseModelNotFound, InvalidBaseModel
from training.models import Job, NewJob, parse_base_model
from training.store import TrainingStore, new_id
from training.supervisor import Supervisor


async def submit_job(
    new: NewJob, store: TrainingStore, supervisor: Supervisor, sidecar: Sidecar, *, job_id: str | None = None
) -> Job:
    """Create and start a job; with `job_id`, an existing job of that id is returned as it is."""
    if job_id is not None and (existing := await store.find_job(job_id)) is not None:
        return existing
    try:
        ref = parse_base_model(new.model)
    except ValueError as error:
        raise InvalidBaseModel(f"'model' is not a base model reference: {error}.") from error
    if ref.packaged:
        try:
            base = await asyncio.to_thread(describe_packaged)
        except ModelFilesMissing as error:
            raise BaseModelNotFound(f"The packaged base model is not available: {error}.") from error
    else:
        base = await resolve_base(supervisor.registry, ref)
    if new.training_collection is not None:
        training_file = await snapshot_collection(
            sidecar, supervisor.settings.ingestion_app_id, store, new.training_collection
        )
    else:
        assert new.training_file is not None
        training_file, _ = await store.get_file(new.training_file)
    if new.validation_file is not None:
        await store.get_file(new.validation_file)
    job_id = job_id or new_id("ftjob")
    job = Job(
        id=job_id,
        model=new.model,
        training_file=training_file.id,
        validation_file=new.validation_file,
        method=new.method,
        hyperparameters=new.hyperparameters,
        nproc_per_node=new.nproc_per_node,
        suffix=new.suffix,
        output_model=new.output_model or ref.name,
        promote_to=new.promote_to,
        output_dtype=new.output_dtype,
        register_output=new.register_output,
        metadata=new.metadata,
        base=base,
        dataset_snapshot_id=training_file.sha256,
        job_dir=str(supervisor.job_dir(job_id)),
    )
    await store.create_job(job)
    supervisor.start(job.id)
    requested = TrainingRequested(
        job_id=job.id, model=job.model, method=job.method.type, training_file=job.training_file
    )
    await sidecar.publish(Topic.TRAINING_REQUESTED, requested.model_dump(mode="json"))
    return job
