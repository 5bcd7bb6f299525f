"""The durable "fine-tune and promote" pipeline: a Dapr Workflow hosted by the training app.

    snapshot dataset → train (a fine-tuning job) → evaluate (held-out loss against the base;
    the gate must pass) → register → move an alias (inference hot-swaps on model.promoted)

Dapr records each finished step in the workflow's history (actor state, placement and
scheduler), so when this app dies the workflow is replayed up to where it was once the app is
back, and goes on. Each activity is safe to run twice, since the app may die after an activity
did its work but before Dapr recorded it: the dataset file and the job take ids derived from
the workflow's instance id (a second call finds them), registration keeps its version number
on the job, and alias moves are idempotent.

The orchestrator below must be deterministic (it is replayed): it only calls activities,
timers and events, and reads time from the context. Activities run on the SDK's worker
threads and do their I/O on the app's event loop, where the sidecar client lives.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable, Coroutine, Generator
from datetime import timedelta
from typing import Any, TypeVar

from dapr.ext.workflow import DaprWorkflowContext, RetryPolicy, WorkflowActivityContext, WorkflowRuntime, when_any

# The SDK fails an activity at once, whatever its retry policy, when the error's type is named
# NonRetryableError (durabletask's `is_error_non_retryable`); the class is not re-exported.
from dapr.ext.workflow._durabletask.task import NonRetryableError
from dapr.ext.workflow.logger import LoggerOptions
from pydantic import BaseModel, ConfigDict, Field

from genai_platform.dapr import Sidecar
from genai_platform.errors import is_transient
from training.collections import snapshot_collection
from training.jobs import submit_job
from training.models import ACTIVE, NewJob
from training.registration import RegistrationFailed
from training.settings import TrainingSettings
from training.store import TrainingStore
from training.supervisor import JOB_FINISHED_EVENT, Supervisor

log = logging.getLogger(__name__)

WORKFLOW = "fine_tune_and_promote"
# Activities that meet a passing hiccup (the sidecar restarting, the registry busy) try again;
# an error that would come back the same (a missing job, a refused version) fails at once: see
# `fails_fast`.
RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=2),
    max_number_of_attempts=5,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=30),
)

T = TypeVar("T")
A = TypeVar("A")


def fails_fast(activity: Callable[[WorkflowActivityContext, A], T]) -> Callable[[WorkflowActivityContext, A], T]:
    """Let only transient errors (genai_platform.errors.is_transient) reach the retry policy.

    Any other error is raised again as the SDK's `NonRetryableError`, with the original type and
    message in its message, so the workflow fails the activity on its first attempt instead of
    asking five times for a job that does not exist.
    """

    @functools.wraps(activity)
    def run(ctx: WorkflowActivityContext, payload: A) -> T:
        try:
            return activity(ctx, payload)
        except Exception as error:
            if is_transient(error):
                raise
            raise NonRetryableError(f"{type(error).__name__}: {error}") from error

    return run


class Gate(BaseModel):
    """What the fine-tuned model must show on held-out examples before it is registered."""

    model_config = ConfigDict(extra="forbid")

    # Its held-out loss must be at most this multiple of the base model's (1.0: no worse).
    max_loss_ratio: float = Field(1.0, gt=0, le=10)


class PipelineRequest(NewJob):
    """Start a fine-tune-and-promote workflow: a job's fields (checked the same way) and a gate.

    `promote_to` is moved by the workflow after the gate; `register_output` is not used, since
    the workflow registers only what passed.
    """

    gate: Gate = Field(default_factory=Gate)

    def job_request(self, training_file: str | None = None) -> NewJob:
        """The job this workflow runs: registration is left to the workflow, after the gate."""
        fields = self.model_dump(exclude={"gate", "promote_to", "register_output"})
        if training_file is not None:
            fields.update(training_file=training_file, training_collection=None)
        return NewJob(**fields, register_output=False)


def gate_verdict(metrics: dict[str, float], gate: Gate) -> dict[str, Any]:
    """Pass or fail a trained model on held-out loss against its base (pure: unit-tested)."""
    tuned, base = metrics.get("eval_loss"), metrics.get("base_eval_loss")
    verdict: dict[str, Any] = {"max_loss_ratio": gate.max_loss_ratio, "eval_loss": tuned, "base_eval_loss": base}
    if tuned is None or base is None or not math.isfinite(tuned) or not math.isfinite(base) or base <= 0:
        return {**verdict, "passed": False, "reason": "no held-out loss to judge by (too few examples?)"}
    ratio = tuned / base
    passed = ratio <= gate.max_loss_ratio
    return {
        **verdict,
        "passed": passed,
        "loss_ratio": ratio,
        "eval_perplexity": math.exp(min(tuned, 50.0)),
        "base_perplexity": math.exp(min(base, 50.0)),
        "reason": (
            f"held-out loss {tuned:.4f} is {ratio:.3f}x the base model's {base:.4f} "
            f"({'within' if passed else 'above'} the allowed {gate.max_loss_ratio:g}x)"
        ),
    }


def job_id_for(instance_id: str) -> str:
    return f"ftjob-{instance_id}"


def file_id_for(instance_id: str) -> str:
    return f"file-{instance_id}"


# --- the orchestrator -------------------------------------------------------------------------


def fine_tune_and_promote(ctx: DaprWorkflowContext, request: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    poll = timedelta(seconds=float(request.pop("poll_s", 30.0)))
    snapshot = yield ctx.call_activity(snapshot_dataset, input=request, retry_policy=RETRY)
    ctx.set_custom_status(f"dataset {snapshot['dataset_snapshot_id']}")

    job = yield ctx.call_activity(
        start_training, input={"request": request, "training_file": snapshot["training_file"]}, retry_policy=RETRY
    )
    while job["status"] in ACTIVE:
        ctx.set_custom_status(f"training {job['id']}: step {job['step']}/{job['total_steps']}")
        # Woken by the supervisor's event when the job ends, or by the timer if that event was
        # lost (the app died between the job's end and the event).
        yield when_any([ctx.wait_for_external_event(JOB_FINISHED_EVENT), ctx.create_timer(poll)])
        job = yield ctx.call_activity(read_job, input=job["id"], retry_policy=RETRY)
    outcome = {"job_id": job["id"], "dataset_snapshot_id": snapshot["dataset_snapshot_id"]}
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        return {**outcome, "status": "training_failed", "reason": error.get("message", job["status"])}

    verdict = yield ctx.call_activity(evaluate, input={"job_id": job["id"], "gate": request.get("gate") or {}})
    outcome["evaluation"] = verdict
    if not verdict["passed"]:
        return {**outcome, "status": "rejected", "reason": verdict["reason"]}

    ctx.set_custom_status("registering")
    registered = yield ctx.call_activity(register, input={"job_id": job["id"], "verdict": verdict}, retry_policy=RETRY)
    outcome.update(registered)
    alias = request.get("promote_to")
    if alias:
        ctx.set_custom_status(f"moving alias {alias}")
        yield ctx.call_activity(
            promote, input={"model": registered["model"], "version": registered["version"], "alias": alias},
            retry_policy=RETRY,
        )  # fmt: skip
        return {**outcome, "status": "promoted", "alias": alias}
    return {**outcome, "status": "registered"}


# --- activities -------------------------------------------------------------------------------


class PipelineActivities:
    """The workflow's steps, with what they need from the app (set once the app has started)."""

    loop: asyncio.AbstractEventLoop
    settings: TrainingSettings
    sidecar: Sidecar
    store: TrainingStore
    supervisor: Supervisor

    def bind(
        self,
        loop: asyncio.AbstractEventLoop,
        settings: TrainingSettings,
        sidecar: Sidecar,
        store: TrainingStore,
        supervisor: Supervisor,
    ) -> None:
        self.loop, self.settings, self.sidecar, self.store, self.supervisor = loop, settings, sidecar, store, supervisor

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the app's event loop from an SDK worker thread, and wait for it."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()


ACTIVITIES = PipelineActivities()


@fails_fast
def snapshot_dataset(ctx: WorkflowActivityContext, request: dict[str, Any]) -> dict[str, Any]:
    """Freeze the examples: an uploaded file as it is, or a collection's chunks into a new file."""
    a = ACTIVITIES

    async def work() -> dict[str, Any]:
        if request.get("training_collection"):
            file = await snapshot_collection(
                a.sidecar,
                a.settings.ingestion_app_id,
                a.store,
                request["training_collection"],
                file_id=file_id_for(ctx.workflow_id),
            )
        else:
            file, _ = await a.store.get_file(request["training_file"])
        return {"training_file": file.id, "dataset_snapshot_id": file.sha256, "examples": file.examples}

    return a.run(work())


@fails_fast
def start_training(ctx: WorkflowActivityContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Submit the job under the workflow's own job id (the job found again if it exists)."""
    a = ACTIVITIES
    request = PipelineRequest(**payload["request"])
    new = request.job_request(training_file=payload["training_file"])
    new = new.model_copy(update={"metadata": {**new.metadata, "workflow": ctx.workflow_id}})
    job = a.run(submit_job(new, a.store, a.supervisor, a.sidecar, job_id=job_id_for(ctx.workflow_id)))
    return _job_view(job)


@fails_fast
def read_job(ctx: WorkflowActivityContext, job_id: str) -> dict[str, Any]:
    a = ACTIVITIES
    return _job_view(a.run(a.store.get_job(job_id)))


@fails_fast
def evaluate(ctx: WorkflowActivityContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The gate, on the held-out losses the job's worker measured before and after training."""
    a = ACTIVITIES
    job = a.run(a.store.get_job(payload["job_id"]))
    return gate_verdict(job.metrics, Gate(**payload["gate"]))


@fails_fast
def register(ctx: WorkflowActivityContext, payload: dict[str, Any]) -> dict[str, Any]:
    a = ACTIVITIES
    verdict = payload["verdict"]
    scores = {k: float(verdict[k]) for k in ("loss_ratio", "eval_perplexity", "base_perplexity") if k in verdict}
    try:
        model, version = a.run(a.supervisor.register_result(payload["job_id"], extra_metrics=scores))
    except RegistrationFailed:
        log.exception("registration failed", extra={"job": payload["job_id"]})
        raise
    return {"model": model, "version": version}


@fails_fast
def promote(ctx: WorkflowActivityContext, payload: dict[str, Any]) -> None:
    """Point the alias at the registered version (idempotent); the registry publishes model.promoted."""
    a = ACTIVITIES
    a.run(a.supervisor.registry.move_alias(payload["model"], payload["alias"], payload["version"]))


def _job_view(job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "step": job.step,
        "total_steps": job.total_steps,
        "error": job.error.model_dump() if job.error else None,
    }


def create_runtime(settings: TrainingSettings) -> WorkflowRuntime:
    # The SDK's records reach our JSON log through the root logger; its own plain-text handler
    # would print each twice, and its INFO lines (one per orchestration step) are noise.
    quiet = LoggerOptions(log_level=logging.WARNING, log_handler=logging.NullHandler())
    logging.getLogger("durabletask-worker").setLevel(logging.WARNING)
    runtime = WorkflowRuntime(host=settings.dapr_host, port=str(settings.dapr_grpc_port), logger_options=quiet)
    runtime.register_workflow(fine_tune_and_promote, name=WORKFLOW)
    for activity in (snapshot_dataset, start_training, read_job, evaluate, register, promote):
        runtime.register_activity(activity, name=activity.__name__)
    return runtime
