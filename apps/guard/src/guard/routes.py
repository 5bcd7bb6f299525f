"""HTTP routes of the guard: checks only, input and output gates, and the streaming step."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from genai_platform.contracts.guard import GuardStreamStep, GuardVerdict, InputVerdict
from genai_platform.dapr import DaprError
from genai_platform.errors import Problem
from genai_platform.events import GuardViolation, RailViolation, Topic
from guard.chain import Direction, Guard, Verdict
from guard.rails.json_schema import InvalidSchema, validator_for
from guard.streaming import stream_step

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/guard", tags=["guard"])
T = TypeVar("T")
MAX_TEXT = 1_000_000


def get_guard(request: Request) -> Guard:
    return request.app.state.guard


GuardDep = Annotated[Guard, Depends(get_guard)]


class JsonAnswer(BaseModel):
    json_schema: dict[str, Any] | None = Field(None, description="Validate the answer against this JSON Schema.")
    json_mode: bool = Field(False, description="The answer must be a JSON object (OpenAI's json_object).")


class CheckRequest(JsonAnswer):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT)
    direction: Direction = Direction.INPUT


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI messages carry more fields (name, tool_call_id)

    role: str
    content: str | None = Field(None, max_length=MAX_TEXT)


class InputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=MAX_TEXT)
    messages: list[ChatMessage] | None = Field(None, max_length=1000)
    request_id: str | None = Field(None, max_length=200, description="Carried into guard.violation events.")


class OutputRequest(JsonAnswer):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT)
    request_id: str | None = Field(None, max_length=200)


class StreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pending: str = Field("", max_length=MAX_TEXT, description="`pending` from the previous answer.")
    chunk: str = Field("", max_length=MAX_TEXT)
    final: bool = Field(False, description="The stream has ended: check and release everything.")
    request_id: str | None = Field(None, max_length=200)


async def _run(request: Request, size: int, work: Callable[[], T]) -> T:
    # The rails are pure CPU; a very long text goes to a thread so health probes still answer.
    if size > request.app.state.settings.inline_check_chars:
        return await run_in_threadpool(work)
    return work()


def _schema_checked(body: JsonAnswer) -> None:
    if body.json_schema is not None:
        try:
            validator_for(body.json_schema)
        except InvalidSchema as error:
            raise Problem(422, f"json_schema is not a valid JSON Schema: {error}") from None


async def publish_violation(request: Request, verdicts: list[Verdict], request_id: str | None) -> None:
    """Tell the platform which rails failed: kinds and counts, never the text."""
    failed = [rail for verdict in verdicts for rail in verdict.violation_summary()]
    if not failed:
        return
    event = GuardViolation(
        direction=str(verdicts[0].direction),
        request_id=request_id,
        allowed=all(v.allowed for v in verdicts),
        blocked_by=sorted({rail for v in verdicts for rail in v.blocked_by}),
        rails=[RailViolation.model_validate(rail) for rail in failed],
        text_chars=sum(len(v.text) for v in verdicts),
    )
    try:
        await request.app.state.sidecar.publish(str(Topic.GUARD_VIOLATION), event.model_dump(mode="json"))
    except (DaprError, httpx.HTTPError):
        # The verdict stands either way; a lost event must not turn a refusal into an outage.
        log.warning("guard.violation not published", extra={"request_id": request_id})


@router.post("/check", summary="Run the rails and report each verdict (no events, nothing enforced)")
async def check(body: CheckRequest, request: Request, guard: GuardDep) -> GuardVerdict:
    _schema_checked(body)
    if body.direction is Direction.INPUT:
        verdict = await _run(request, len(body.text), lambda: guard.check_input(body.text))
    else:
        verdict = await _run(
            request,
            len(body.text),
            lambda: guard.check_output(body.text, json_schema=body.json_schema, json_mode=body.json_mode),
        )
    return verdict.to_json()


@router.post("/input", summary="Gate a user's text or chat messages before the model sees them")
async def check_input(body: InputRequest, request: Request, guard: GuardDep) -> GuardVerdict | InputVerdict:
    if (body.text is None) == (body.messages is None):
        raise Problem(422, "Give `text` or `messages`, one of them.")
    roles = set(guard.policy.input.roles)
    if body.text is not None:
        verdict = await _run(request, len(body.text), lambda: guard.check_input(body.text))
        await publish_violation(request, [verdict], body.request_id)
        return verdict.to_json()

    messages = body.messages or []
    checked = [(i, m) for i, m in enumerate(messages) if m.role in roles and m.content]
    size = sum(len(m.content or "") for _, m in checked)
    verdicts = await _run(request, size, lambda: [guard.check_input(m.content or "") for _, m in checked])
    await publish_violation(request, verdicts, body.request_id)
    sanitized = [m.model_dump(exclude_none=True) for m in messages]
    for (i, _), verdict in zip(checked, verdicts, strict=True):
        sanitized[i]["content"] = verdict.text
    return {
        "direction": "input",
        "allowed": all(v.allowed for v in verdicts),
        "blocked_by": sorted({rail for v in verdicts for rail in v.blocked_by}),
        "redacted": any(v.changed for v in verdicts),
        "messages": sanitized,
        "checked": [{"index": i, **v.to_json()} for (i, _), v in zip(checked, verdicts, strict=True)],
    }


@router.post("/output", summary="Gate a model's answer: redact, strip, validate JSON")
async def check_output(body: OutputRequest, request: Request, guard: GuardDep) -> GuardVerdict:
    _schema_checked(body)
    verdict = await _run(
        request,
        len(body.text),
        lambda: guard.check_output(body.text, json_schema=body.json_schema, json_mode=body.json_mode),
    )
    await publish_violation(request, [verdict], body.request_id)
    return verdict.to_json()


@router.post("/output/stream", summary="One step of a streamed answer: release the checked sentences")
async def check_output_stream(body: StreamRequest, request: Request, guard: GuardDep) -> GuardStreamStep:
    size = len(body.pending) + len(body.chunk)
    step = await _run(request, size, lambda: stream_step(guard, body.pending, body.chunk, body.final))
    if step.verdict is not None:
        await publish_violation(request, [step.verdict], body.request_id)
    return step.to_json()


@router.get("/policy", summary="The policy in force")
async def policy(guard: GuardDep) -> dict:
    return guard.policy.model_dump(mode="json")
