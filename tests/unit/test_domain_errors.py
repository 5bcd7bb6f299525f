"""Domain errors: mapped to problem+json once, and told apart as transient or not for retries."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from dapr.ext.workflow._durabletask.task import is_error_non_retryable
from fastapi import FastAPI
from fastapi.testclient import TestClient

from genai_platform.dapr import DaprError, StateConflict, with_etag_retries
from genai_platform.errors import ConcurrentUpdate, DomainError, Problem, install_error_handlers, is_transient
from genai_platform.registry_client import RegistryConflict, RegistryNotFound, RegistryUnavailable
from prompts.errors import LabelMoved
from registry.errors import ChecksumMismatch, VersionNotFound
from training.errors import CollectionChanged, DependencyUnavailable, JobNotFound
from training.registration import RegistrationFailed
from training.workflow import RETRY, fails_fast


def test_a_domain_error_leaves_as_problem_json_with_its_status_title_and_extensions() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/label")
    async def moved() -> None:
        raise LabelMoved("Label 'production' points at version 3, not 2.", current_version=3)

    @app.get("/checksum")
    async def checksum() -> None:
        raise ChecksumMismatch("The parts of 'model.safetensors' do not hash to the sha256 given.")

    @app.get("/busy")
    async def busy() -> None:
        raise DependencyUnavailable("The model registry did not answer; try again.")

    client = TestClient(app)
    response = client.get("/label")
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "Label 'production' points at version 3, not 2.",
        "current_version": 3,
        "instance": "/label",
    }
    checksum_body = client.get("/checksum").json()
    assert (checksum_body["status"], checksum_body["title"]) == (422, "Checksum mismatch")
    busy_answer = client.get("/busy")
    assert busy_answer.status_code == 503 and busy_answer.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        # Fail the same way every time: retrying only delays the answer.
        (VersionNotFound("Model 'chat' has no version 9."), False),
        (JobNotFound("There is no fine-tuning job 'ftjob-x'."), False),
        (LabelMoved("moved", current_version=2), False),
        (Problem(422, "not valid"), False),
        (RegistryNotFound(404, "no such alias"), False),
        (RegistryConflict(409, "version 2 is ready, so its files are immutable"), False),
        (DaprError(400, "ERR_MALFORMED_REQUEST", "bad key"), False),
        (RegistrationFailed("the registry answered 422"), False),
        (KeyError("version"), False),
        (ValueError("1 validation error for Version"), False),
        # May pass: the sidecar or a service restarting, a busy store, a lost race.
        (RegistryUnavailable(503, "the registry cannot be reached"), True),
        (DependencyUnavailable("ingestion did not answer"), True),
        (CollectionChanged("a document went away"), True),
        (ConcurrentUpdate("kept changing"), True),
        (StateConflict(409, "ERR_STATE_SAVE", "etag mismatch"), True),
        (DaprError(500, "ERR_DIRECT_INVOKE", "failed to invoke"), True),
        (Problem(503, "The guard cannot answer."), True),
        (Problem(429, "Too many requests."), True),
        (httpx.ConnectError("connection refused"), True),
        (httpx.ReadTimeout("timed out"), True),
        (TimeoutError(), True),
        (RegistrationFailed("the registry answered 503", transient=True), True),
        # The app shutting down under a running activity: the activity runs again after the restart.
        (RuntimeError("Event loop is closed"), True),
    ],
)
def test_transient_errors_are_told_from_those_that_would_come_back(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_workflow_activity_fails_at_once_on_a_domain_error_and_is_retried_on_a_hiccup() -> None:
    """What reaches the SDK decides: it retries by the failure's type name (durabletask's rule)."""
    calls: list[str] = []

    @fails_fast
    def read(ctx: object, job_id: str) -> dict:
        calls.append(job_id)
        if job_id == "missing":
            raise JobNotFound(f"There is no fine-tuning job '{job_id}'.")
        raise DaprError(500, "ERR_STATE_GET", "redis is restarting")

    with pytest.raises(Exception) as missing:
        read(None, "missing")
    assert is_error_non_retryable(type(missing.value).__name__, RETRY.obj)
    assert "JobNotFound" in str(missing.value) and "missing" in str(missing.value)

    with pytest.raises(DaprError) as hiccup:
        read(None, "busy")
    assert not is_error_non_retryable(type(hiccup.value).__name__, RETRY.obj)
    assert calls == ["missing", "busy"]
    assert read.__name__ == "read"  # the SDK registers and calls activities by this name


def test_etag_retries_give_up_with_a_transient_conflict() -> None:
    async def always_loses() -> None:
        raise StateConflict(409, "ERR_STATE_SAVE", "etag mismatch")

    with pytest.raises(ConcurrentUpdate) as gave_up:
        asyncio.run(with_etag_retries(always_loses, attempts=3))
    assert isinstance(gave_up.value, DomainError) and gave_up.value.status == 409
    assert gave_up.value.problem().title == "Conflict"
