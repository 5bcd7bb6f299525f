"""Start and follow fine-tune-and-promote workflows (Dapr Workflow runs hosted by this app)."""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from genai_platform.errors import Problem, problem_responses
from genai_platform.paths import ResourceId
from genai_platform.service import SidecarDep
from training.base_models import resolve_base
from training.errors import InvalidBaseModel
from training.models import parse_base_model
from training.routes import StoreDep, SupervisorDep, TrainingSettingsDep
from training.workflow import WORKFLOW, PipelineRequest, job_id_for

router = APIRouter(prefix="/v1/fine_tuning/workflows", tags=["fine-tuning"])

# Dapr's runtime status names → the words this API answers with.
STATUS = {
    "PENDING": "pending",
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "TERMINATED": "terminated",
    "SUSPENDED": "suspended",
    "STALLED": "stalled",
}


class WorkflowStarted(BaseModel):
    """A workflow run just scheduled: its id, and the id its fine-tuning job will have."""

    id: str
    object: Literal["fine_tuning.workflow"]
    status: Literal["pending"]
    job_id: str


class WorkflowRun(BaseModel):
    """A workflow run as Dapr reports it: `status` (one of STATUS's words, or "unknown"), `step` the
    step it is in, `outcome` its output once completed, `failure` the error message once failed;
    times as Dapr gives them (ISO 8601)."""

    id: str
    object: Literal["fine_tuning.workflow"]
    status: str
    step: Any = None
    created_at: str | None = None
    updated_at: str | None = None
    job_id: str
    outcome: Any = None
    failure: str | None = None


@router.post(
    "",
    status_code=202,
    summary="Fine-tune, evaluate against the base, register and promote, durably",
    response_model=WorkflowStarted,
)
async def start_workflow(
    body: PipelineRequest,
    sidecar: SidecarDep,
    store: StoreDep,
    supervisor: SupervisorDep,
    settings: TrainingSettingsDep,
) -> dict[str, Any]:
    # What can be checked now is checked now: a refused request starts nothing.
    try:
        ref = parse_base_model(body.model)
    except ValueError as error:
        raise InvalidBaseModel(f"'model' is not a base model reference: {error}.") from error
    if not ref.packaged:
        await resolve_base(supervisor.registry, ref)
    for file_id in (body.training_file, body.validation_file):
        if file_id is not None:
            await store.get_file(file_id)
    instance_id = f"ftwf-{secrets.token_hex(10)}"
    await sidecar.start_workflow(WORKFLOW, instance_id, {**body.model_dump(), "poll_s": settings.workflow_poll_s})
    return {"id": instance_id, "object": "fine_tuning.workflow", "status": "pending", "job_id": job_id_for(instance_id)}


# Documented, not re-validated: Dapr's fields go out as Dapr sends them.
@router.get(
    "/{instance_id}",
    summary="A workflow's status, current step and outcome",
    response_model=None,
    responses={200: {"model": WorkflowRun}, **problem_responses(404)},
)
async def get_workflow(instance_id: ResourceId, sidecar: SidecarDep) -> dict[str, Any]:
    found = await sidecar.get_workflow(instance_id)
    if found is None:
        raise Problem(404, f"There is no fine-tuning workflow '{instance_id}'.")
    properties = found.get("properties", {})
    return {
        "id": instance_id,
        "object": "fine_tuning.workflow",
        "status": STATUS.get(str(found.get("runtimeStatus", "")).upper(), "unknown"),
        "step": properties.get("dapr.workflow.custom_status"),
        "created_at": found.get("createdAt"),
        "updated_at": found.get("lastUpdatedAt"),
        "job_id": job_id_for(instance_id),
        "outcome": _json_or_none(properties.get("dapr.workflow.output")),
        "failure": properties.get("dapr.workflow.failure.error_message"),
    }


def _json_or_none(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
