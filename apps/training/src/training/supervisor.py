"""Runs fine-tuning jobs as worker processes and turns their progress into state and events.

The API process never trains: it launches `python -m training.worker` (or torchrun for
`nproc_per_node` > 1) in a process group of its own, reads the worker's progress file, stores
events, publishes `training.*` and registers the result.

When the app dies, its workers notice within one step (they check that the app's pid is alive)
and stop; the next app start finds the job still `running`, ends any leftover worker group
named in the job folder's pid file, and starts a worker again, which resumes from the newest
checkpoint. A lock on the job folder keeps two workers from ever training the same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from genai_platform.dapr import DaprError, Sidecar
from genai_platform.errors import is_transient
from genai_platform.events import Topic, TrainingCompleted, TrainingFailed, TrainingProgress
from genai_platform.registry_client import RegistryClient, RegistryError
from training.base_models import download_base
from training.models import ACTIVE, Job, JobError, JobEvent, JobResult, unix_now
from training.progress import read_records
from training.registration import RegistrationFailed, register_output
from training.settings import TrainingSettings
from training.spec import EXIT_STOPPED, JobSpec
from training.store import TrainingStore

log = logging.getLogger(__name__)

# Times a worker that died before doing anything is started (see _died_at_start).
WORKER_STARTS = 3
# The external event a fine-tune-and-promote workflow waits for while its job runs.
JOB_FINISHED_EVENT = "job_finished"


def worker_argv(spec_path: Path, nproc: int, rendezvous_port: int) -> list[str]:
    """The command that runs a job: one process, or torchrun with a loopback-only rendezvous."""
    if nproc <= 1:
        return [sys.executable, "-m", "training.worker", str(spec_path)]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{rendezvous_port}",
        "--max-restarts",
        "0",
        "-m",
        "training.worker",
        str(spec_path),
    ]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def event_from_record(job_id: str, offset: int, record: dict[str, Any]) -> JobEvent | None:
    """The API's view of one progress record (None for records users need not see)."""
    kind = record["type"]
    created = int(record.get("time", unix_now()))
    data = {k: v for k, v in record.items() if k not in ("type", "time")}
    event_id = f"ftevent-{job_id.removeprefix('ftjob-')[:12]}-{offset}"
    if kind == "step":
        message = f"Step {record['step']}/{record['total_steps']}: training loss={record['loss']:.4f}"
        return JobEvent(id=event_id, created_at=created, type="metrics", message=message, data=data)
    if kind == "eval":
        label = "Base model held-out loss" if record.get("base") else "Held-out loss"
        message = f"{label}={record['eval_loss']:.4f}"
        return JobEvent(id=event_id, created_at=created, type="metrics", message=message, data=data)
    messages = {
        "started": lambda r: f"Fine-tuning started: {r['total_steps']} steps on {r['examples']} examples",
        "resumed": lambda r: f"Resumed from the checkpoint at step {r['step']}",
        "checkpoint": lambda r: f"Checkpoint saved at step {r['step']}",
        "exported": lambda r: "Trained weights exported",
        "completed": lambda r: "Training completed",
        "failed": lambda r: f"Training failed: {r['reason']}",
    }
    if kind not in messages:
        return None
    level = "error" if kind == "failed" else "info"
    return JobEvent(
        id=event_id, created_at=created, level=level, type="message", message=messages[kind](record), data=data
    )


class Supervisor:
    def __init__(self, settings: TrainingSettings, sidecar: Sidecar, store: TrainingStore) -> None:
        self.settings = settings
        self.sidecar = sidecar
        self.store = store
        self.registry = RegistryClient(sidecar, settings.registry_app_id)
        self.data_dir = settings.data_dir.resolve()
        self._slots = asyncio.Semaphore(settings.max_running_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._workers: dict[str, asyncio.subprocess.Process] = {}

    def job_dir(self, job_id: str) -> Path:
        return self.data_dir / job_id

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, job_id: str) -> None:
        if job_id not in self._tasks or self._tasks[job_id].done():
            task = asyncio.create_task(self._drive(job_id), name=f"job {job_id}")
            self._tasks[job_id] = task

    async def resume_all(self) -> list[str]:
        """At start-up: take up every unfinished job of this data folder (after a crash or restart)."""
        resumed = []
        for job in await self.store.list_jobs():
            # Only jobs of this app's data folder: another deployment's jobs are not ours to take.
            if job.status in ACTIVE and Path(job.job_dir).parent == self.data_dir:
                await asyncio.to_thread(end_leftover_worker, Path(job.job_dir))
                log.info("resuming job", extra={"job": job.id, "status": job.status, "step": job.step})
                self.start(job.id)
                resumed.append(job.id)
        return resumed

    async def close(self) -> None:
        """Stop workers at their next step (their jobs stay `running` and resume on the next start)."""
        for process in self._workers.values():
            _signal_group(process.pid, signal.SIGTERM)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def cancel(self, job_id: str) -> Job:
        def mark(job: Job) -> None:
            if job.status in ACTIVE:
                job.status, job.finished_at = "cancelled", unix_now()

        job = await self.store.update_job(job_id, mark)
        process = self._workers.get(job_id)
        if process is not None:
            _signal_group(process.pid, signal.SIGTERM)
        await self._tell_workflow(job_id)
        return job

    # --- one job ------------------------------------------------------------------------------

    async def _drive(self, job_id: str) -> None:
        await self._supervise(job_id)
        await self._tell_workflow(job_id)

    async def _tell_workflow(self, job_id: str) -> None:
        """Wake the workflow that owns a job once the job has ended (it also polls, as a fallback)."""
        job = await self.store.find_job(job_id)
        instance = job.metadata.get("workflow") if job is not None else None
        if job is None or instance is None or job.status in ACTIVE:
            return
        try:
            ended = {"job_id": job_id, "status": job.status}
            await self.sidecar.raise_workflow_event(instance, JOB_FINISHED_EVENT, ended)
        except DaprError:
            log.warning("could not tell the workflow its job ended; it will poll", extra={"job": job_id})

    async def _supervise(self, job_id: str) -> None:
        try:
            async with self._slots:
                job = await self.store.get_job(job_id)
                if job.status not in ACTIVE:
                    return
                finished = await self._finished_already(job)
                if not finished:
                    spec = await self._prepare(job)
                    for start in range(1, WORKER_STARTS + 1):
                        exit_code = await self._run_worker(job, spec)
                        job = await self.store.get_job(job_id)
                        if job.status == "cancelled":
                            return
                        record = await self._drain(job)
                        if not _died_at_start(exit_code, record, spec) or start == WORKER_STARTS:
                            break
                        # Seen rarely here: a worker killed by a signal (SIGSEGV) before Python ran a
                        # line, while the workflow runtime's gRPC threads ran in this process. It had
                        # done nothing, so starting it again is safe.
                        log.warning("worker died at start; starting it again", extra={"job": job_id, "code": exit_code})
                    if record is None or record["type"] != "completed":
                        reason = record["reason"] if record else f"the worker exited with code {exit_code}"
                        if exit_code == EXIT_STOPPED and record is None:
                            return  # stopped by our own shutdown: resumed on the next start
                        await self._fail(job_id, "training_failed", reason)
                        return
                await self._register(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("job supervision failed", extra={"job": job_id})
            await self._fail(job_id, "internal_error", f"{type(error).__name__}: {error}"[:300])

    async def _finished_already(self, job: Job) -> bool:
        """True when the worker had completed before a crash: only registration is left."""
        await self._drain(job)
        job = await self.store.get_job(job.id)
        return job.result is not None

    async def _prepare(self, job: Job) -> JobSpec:
        """Write the job folder: dataset copies and spec.json; download a registry base model."""
        folder = Path(job.job_dir)
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        if not (folder / "train.jsonl").exists():
            _, train = await self.store.get_file(job.training_file)
            held_out = ""
            if job.validation_file:
                _, held_out = await self.store.get_file(job.validation_file)
            await asyncio.to_thread(_write_datasets, folder, train, held_out, job.validation_file is None)
        base_dir: Path | None = None
        if job.base.get("source") == "registry":
            base_dir = await download_base(self.registry, job.base, self.data_dir / "base-models")
        spec = JobSpec(
            job_id=job.id,
            method=job.method.type,
            hyperparameters=job.hyperparameters,
            base_dir=base_dir,
            model_cache_dir=self.settings.model_cache_dir,
            job_dir=folder,
            output_dtype=job.output_dtype,
            device=self.settings.device,
            torch_threads=self.settings.torch_threads,
        )
        await asyncio.to_thread((folder / "spec.json").write_text, json.dumps(spec.to_json(), indent=2))
        return spec

    async def _run_worker(self, job: Job, spec: JobSpec) -> int:
        folder = spec.job_dir
        argv = worker_argv(folder / "spec.json", job.nproc_per_node, free_port())
        env = {
            **os.environ,
            "TRAINING_OWNER_PID": str(os.getpid()),
            # gloo and torchrun talk over loopback only.
            "GLOO_SOCKET_IFNAME": "lo",
            "MASTER_ADDR": "127.0.0.1",
            "TOKENIZERS_PARALLELISM": "false",
            # A crash in native code leaves a Python traceback in worker.log.
            "PYTHONFAULTHANDLER": "1",
        }
        with (folder / "worker.log").open("ab") as worker_log:
            # A process group of its own: cancel and shutdown signal torchrun and every rank at once.
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=worker_log, stderr=worker_log, env=env, start_new_session=True
            )
        self._workers[job.id] = process
        await asyncio.to_thread((folder / "worker.pid").write_text, json.dumps({"pid": process.pid, "argv": argv[:3]}))

        def running(j: Job) -> None:
            if j.status in ACTIVE:
                j.status = "running"
                j.started_at = j.started_at or unix_now()
                j.attempts += 1

        await self.store.update_job(job.id, running)
        log.info("worker started", extra={"job": job.id, "pid": process.pid, "nproc": job.nproc_per_node})
        try:
            while True:
                try:
                    code = await asyncio.wait_for(process.wait(), timeout=self.settings.poll_interval_s)
                    break
                except TimeoutError:
                    await self._drain(await self.store.get_job(job.id))
        finally:
            self._workers.pop(job.id, None)
        with contextlib.suppress(FileNotFoundError):
            (folder / "worker.pid").unlink()
        log.info("worker exited", extra={"job": job.id, "code": code})
        return code

    async def _drain(self, job: Job) -> dict[str, Any] | None:
        """Read new progress records: store them as events, publish progress, update the job.

        Returns the terminal record (completed or failed) when one was read now or before."""
        path = Path(job.job_dir) / "progress.jsonl"
        _, offset = await self.store.read_events(job.id)
        records, new_offset = await asyncio.to_thread(read_records, path, offset)
        terminal = None
        if records:
            events = []
            position = offset
            for record in records:
                event = event_from_record(job.id, position, record)
                position += 1
                if event is not None:
                    events.append(event)
            await self.store.append_events(job.id, events, new_offset)
            for record in records:
                await self._publish_record(job, record)
            terminal = next((r for r in reversed(records) if r["type"] in ("completed", "failed")), None)

            def apply(j: Job) -> None:
                for record in records:
                    if record["type"] == "step":
                        j.step, j.total_steps = record["step"], record["total_steps"]
                        j.trained_tokens = record["trained_tokens"]
                        j.metrics["train_loss"] = record["loss"]
                    elif record["type"] == "eval":
                        j.metrics["base_eval_loss" if record.get("base") else "eval_loss"] = record["eval_loss"]
                    elif record["type"] in ("started", "resumed"):
                        j.total_steps = record["total_steps"]
                    elif record["type"] == "completed":
                        j.metrics.update(record["metrics"])
                        j.trained_tokens = record["trained_tokens"]
                        j.result = JobResult(output_dir=record["output_dir"])
                j.progress_offset = new_offset

            await self.store.update_job(job.id, apply)
        if terminal is None:
            latest = await self.store.get_job(job.id)
            if latest.result is not None:
                terminal = {"type": "completed"}
        return terminal

    async def _publish_record(self, job: Job, record: dict[str, Any]) -> None:
        if record["type"] != "step":
            return
        payload = TrainingProgress(
            job_id=job.id,
            step=record["step"],
            total_steps=record["total_steps"],
            loss=record["loss"],
            learning_rate=record["learning_rate"],
            tokens_per_second=record["tokens_per_second"],
        )
        try:
            await self.sidecar.publish(Topic.TRAINING_PROGRESS, payload.model_dump(mode="json"))
        except DaprError:
            # Progress is advisory (the events endpoint has every step); a broker blip must not stop a job.
            log.warning("could not publish training.progress", extra={"job": job.id})

    async def _register(self, job_id: str) -> None:
        job = await self.store.get_job(job_id)
        model, version = job.output_model, None
        if job.register_output:
            try:
                model, version = await self.register_result(job_id, promote_to=job.promote_to)
            except RegistrationFailed as error:
                await self._fail(job_id, "registration_failed", str(error)[:300])
                return

        def succeed(j: Job) -> None:
            j.status, j.finished_at = "succeeded", unix_now()

        job = await self.store.update_job(job_id, succeed)
        assert job.result is not None
        completed = TrainingCompleted(
            job_id=job_id,
            output_dir=job.result.output_dir,
            final_loss=job.metrics.get("train_loss"),
            metrics=job.metrics,
            model=model if version is not None else None,
            version=version,
            dataset_snapshot_id=job.dataset_snapshot_id,
        )
        await self.sidecar.publish(Topic.TRAINING_COMPLETED, completed.model_dump(mode="json"))

    async def register_result(
        self, job_id: str, *, promote_to: str | None = None, extra_metrics: dict[str, float] | None = None
    ) -> tuple[str, int]:
        """Upload a finished job's weights as a new registry version; safe to call again.

        The version number is kept on the job as soon as it exists, so a retry (or a workflow
        activity run again after a crash) completes that version instead of adding another.
        """

        async def remember(number: int) -> None:
            def keep(j: Job) -> None:
                assert j.result is not None
                j.result.registry_model, j.result.registry_version = j.output_model, number

            await self.store.update_job(job_id, keep)

        job = await self.store.get_job(job_id)
        if job.result is None:
            raise RegistrationFailed(f"job '{job_id}' has no trained weights to register")
        for attempt in range(3):
            try:
                registering = job.model_copy(
                    update={"promote_to": promote_to, "metrics": {**job.metrics, **(extra_metrics or {})}}
                )
                model, version = await register_output(
                    self.registry, registering, self.settings.registry_part_size, remember
                )
                break
            except (RegistryError, DaprError, OSError) as error:
                # A refusal (a 4xx) comes back the same however often it is asked; a hiccup may pass.
                if attempt == 2 or not is_transient(error):
                    raise RegistrationFailed(str(error), transient=is_transient(error)) from error
                log.warning("registration failed; retrying", extra={"job": job_id, "error": str(error)[:200]})
                await asyncio.sleep(2 * (attempt + 1))
                job = await self.store.get_job(job_id)

        def record(j: Job) -> None:
            assert j.result is not None
            j.result.registry_model, j.result.registry_version, j.result.alias = model, version, promote_to
            j.fine_tuned_model = f"{model}:{version}"

        await self.store.update_job(job_id, record)
        event = JobEvent(
            id=f"ftevent-{job_id.removeprefix('ftjob-')[:12]}-registered",
            created_at=unix_now(),
            type="message",
            message=f"Registered as {model} version {version}",
            data={"model": model, "version": version, "alias": promote_to},
        )
        events, offset = await self.store.read_events(job_id)
        if all(e.id != event.id for e in events):
            await self.store.append_events(job_id, [event], offset)
        return model, version

    async def _fail(self, job_id: str, code: str, reason: str) -> None:
        def mark(job: Job) -> None:
            if job.status in ACTIVE:
                job.status, job.finished_at = "failed", unix_now()
                job.error = JobError(code=code, message=reason)

        with contextlib.suppress(Exception):
            await self.store.update_job(job_id, mark)
        try:
            failed = TrainingFailed(job_id=job_id, code=code, reason=reason)
            await self.sidecar.publish(Topic.TRAINING_FAILED, failed.model_dump(mode="json"))
        except DaprError:
            log.warning("could not publish training.failed", extra={"job": job_id})


def _died_at_start(exit_code: int, record: dict[str, Any] | None, spec: JobSpec) -> bool:
    """A worker ended by a signal before it wrote a single progress record."""
    return exit_code < 0 and record is None and not spec.progress_path.exists()


def _write_datasets(folder: Path, train: str, held_out: str, split: bool) -> None:
    from training.datasets import split_held_out

    examples = [json.loads(line)["messages"] for line in train.splitlines() if line.strip()]
    if split and not held_out:
        examples, held = split_held_out(examples)
        held_out = "".join(json.dumps({"messages": m}) + "\n" for m in held)
    (folder / "eval.jsonl").write_text(held_out)
    (folder / "train.jsonl.tmp").write_text("".join(json.dumps({"messages": m}) + "\n" for m in examples))
    os.rename(folder / "train.jsonl.tmp", folder / "train.jsonl")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def end_leftover_worker(job_dir: Path) -> None:
    """SIGTERM the worker group a crashed app left behind, if its pid file names a live worker.

    Workers stop by themselves once their app is gone; this covers one that has not noticed yet.
    The pid is trusted only when that process still runs our worker command (pids are reused).
    """
    try:
        pid = json.loads((job_dir / "worker.pid").read_text())["pid"]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, KeyError):
        return
    if "training.worker" in cmdline and str(job_dir) in cmdline:
        _signal_group(pid, signal.SIGTERM)
