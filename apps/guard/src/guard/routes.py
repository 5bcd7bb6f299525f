"""HTTP routes of the guard: checks only, input and output gates, and the streaming steps."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from genai_platform.contracts.guard import (
    MAX_TEXT,
    GuardStreamStep,
    GuardStreamStepRequest,
    GuardStreamStepResults,
    GuardStreamSteps,
    GuardVerdict,
    InputVerdict,
)
from genai_platform.dapr import DaprError
from genai_platform.errors import Problem, invalid_request
from genai_platform.events import GuardViolation, RailViolation, Topic
from guard.chain import Direction, Guard, Verdict
from guard.rails.json_schema import InvalidSchema, validator_for
from guard.streaming import step_with_lookahead, stream_step

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/guard", tags=["guard"])
T = TypeVar("T")


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off on every
# request (a profile of the guard under streamed chats found ~19% of its CPU there).
async def get_guard(request: Request) -> Guard:
    return request.app.state.guard


GuardDep = Annotated[Guard, Depends(get_guard)]


class JsonAnswer(BaseModel):
    json_schema: dict[str, Any] | None = Field(None, description="Validate the answer against this JSON Schema.")
    json_mode: bool = Field(False, description="The answer must be a JSON object (OpenAI's json_object).")


class CheckRequest(JsonAnswer):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT)
    direction: Direction = Direction.INPUT


class ContentPart(BaseModel):
    """One part of a message's content (OpenAI's content parts); only `text` parts hold text."""

    model_config = ConfigDict(extra="allow")  # image_url, input_audio, ... carry their own fields

    type: str
    text: str | None = Field(None, max_length=MAX_TEXT)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI messages carry more fields (name, tool_call_id)

    role: str
    content: str | list[ContentPart] | None = Field(None, max_length=MAX_TEXT)

    def text(self) -> str:
        """The text the model reads: the content, or its text parts joined as inference joins them."""
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class InputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=MAX_TEXT)
    messages: list[ChatMessage] | None = Field(None, max_length=1000)
    variables: dict[str, Any] | None = Field(
        None, max_length=1000, description="A prompt's variables: every string in them is checked like a message."
    )
    request_id: str | None = Field(None, max_length=200, description="Carried into guard.violation events.")


class OutputRequest(JsonAnswer):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT)
    request_id: str | None = Field(None, max_length=200)


class StreamRequest(GuardStreamStepRequest, JsonAnswer):
    """One stream step; a JSON answer's stream names its `json_mode` or `json_schema`."""


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


@router.post("/input", summary="Gate a user's text, or a chat request's messages and prompt variables")
async def check_input(body: InputRequest, request: Request, guard: GuardDep) -> GuardVerdict | InputVerdict:
    """`text` alone answers one verdict; `messages` (with `variables`, optional) answer the verdict on
    the whole request: every message of every role is checked, because a client writes its system
    and assistant turns as freely as its user turns (an injection planted in an earlier "assistant"
    turn is a known attack), and so is every string in a prompt's variables, which the prompt puts
    in front of the model. Content parts are checked as the one text the model reads (text parts
    joined); a checked message goes on with that text as its content, redacted where a rail says so.
    """
    if (body.text is None) == (body.messages is None):
        raise Problem(422, "Give `text` or `messages`, one of them.")
    if body.text is not None:
        if body.variables is not None:
            raise Problem(422, "`variables` go with `messages`, not with `text`.")
        verdict = await _run(request, len(body.text), lambda: guard.check_input(body.text))
        await publish_violation(request, [verdict], body.request_id)
        return verdict.to_json()

    messages = body.messages or []
    texts = {("message", i): m.text() for i, m in enumerate(messages)}
    strings = dict(_strings(body.variables or {}))
    texts.update({("variable", path): text for path, text in strings.items()})
    checked = {key: text for key, text in texts.items() if text}
    size = sum(len(text) for text in checked.values())
    verdicts = await _run(request, size, lambda: {key: guard.check_input(text) for key, text in checked.items()})
    await publish_violation(request, list(verdicts.values()), body.request_id)
    sanitized = [m.model_dump(exclude_none=True) for m in messages]
    variables = dict(body.variables or {})
    for (kind, where), verdict in verdicts.items():
        if kind == "message":
            sanitized[where]["content"] = verdict.text
        else:
            variables = _replaced(variables, where, verdict.text)
    answer: dict[str, Any] = {
        "direction": "input",
        "allowed": all(v.allowed for v in verdicts.values()),
        "blocked_by": sorted({rail for v in verdicts.values() for rail in v.blocked_by}),
        "redacted": any(v.changed for v in verdicts.values()),
        "messages": sanitized,
        "checked": [{"index": where, **v.to_json()} for (kind, where), v in verdicts.items() if kind == "message"],
    }
    if body.variables is not None:
        answer["variables"] = variables
        answer["checked_variables"] = [
            {"variable": _dotted(where), **v.to_json()} for (kind, where), v in verdicts.items() if kind == "variable"
        ]
    return answer


Path = tuple[str | int, ...]


def _strings(value: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """Every string in a JSON value with its path (keys and list indexes), depth first."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _strings(item, (*path, key))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _strings(item, (*path, i))]
    return []


def _replaced(value: Any, path: Path, text: str) -> Any:
    """A copy of `value` with the string at `path` replaced by `text`."""
    if not path:
        return text
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, text)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, text)  # type: ignore[index]
    return copy


def _dotted(path: Path) -> str:
    return ".".join(str(step) for step in path)


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


@router.post("/output/stream", summary="One step of a streamed answer: release what no rail could still change")
async def check_output_stream(body: StreamRequest, request: Request, guard: GuardDep) -> GuardStreamStep:
    _schema_checked(body)
    size = len(body.pending) + len(body.chunk)
    step = await _run(
        request,
        size,
        lambda: stream_step(
            guard, body.pending, body.chunk, body.final, json_schema=body.json_schema, json_mode=body.json_mode
        ),
    )
    if step.verdict is not None:
        await publish_violation(request, [step.verdict], body.request_id)
    return step.to_json()


@router.post(
    "/output/stream/batch",
    summary="One step of each of several streamed answers, in one call",
    response_model=GuardStreamStepResults,
)
async def check_output_streams(body: GuardStreamSteps, request: Request, guard: GuardDep) -> dict[str, Any]:
    """Each step exactly as `POST /output/stream` answers it, in order: a caller relaying many
    streams (the gateway) makes one call per round instead of one per stream. Each step that did
    not end its stream also holds `after_space`: the step a next chunk of one space would make,
    when it releases clean text (guard.streaming.after_space). Plain-text streams only (a JSON
    answer's stream goes through `/output/stream` with its `json_mode`/`json_schema`)."""
    size = sum(len(step.pending) + len(step.chunk) for step in body.steps)
    if size > MAX_TEXT:
        # As much text as one call of any other route: a batch must not buy 256 times the work
        # (a new-user trial's 15 MB batch ran past the caller's timeout, and Dapr's retries ran it
        # again and again for 90 s).
        message = f"The steps hold {size} characters of text in all; the most one batch may hold is {MAX_TEXT}."
        problem = invalid_request([{"location": "body.steps", "message": message}], detail=message)
        problem.extensions.update(limit="batch_chars", limit_value=MAX_TEXT)
        raise problem
    answers = await _run(
        request, size, lambda: [step_with_lookahead(guard, s.pending, s.chunk, s.final) for s in body.steps]
    )
    steps = [step for step, _ in answers]
    # Together, so one stream's violation event does not hold up the others' steps.
    await asyncio.gather(
        *(
            publish_violation(request, [step.verdict], asked.request_id)
            for asked, step in zip(body.steps, steps, strict=True)
            if step.verdict is not None
        )
    )
    return {"steps": [step.to_json(ahead) for step, ahead in answers]}


@router.get("/policy", summary="The policy in force")
async def policy(guard: GuardDep) -> dict:
    return guard.policy.model_dump(mode="json")
