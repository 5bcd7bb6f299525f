"""HTTP routes of the prompts service: parse, call the store or the renderer, answer."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from genai_platform.contracts.prompts import RenderedPrompt
from genai_platform.dapr import DaprError
from genai_platform.errors import Problem, problem_responses
from genai_platform.events import CloudEvent, PromptUpdated, Topic
from genai_platform.paths import path_parameter
from genai_platform.subscriptions import Subscriptions
from prompts.cache import RenderCache
from prompts.schemas import CreatedPrompt, PromptHead, PromptVersion
from prompts.store import PromptStore, with_labels
from prompts.templates import (
    LABEL_PATTERN,
    NAME_PATTERN,
    REF_PATTERN,
    PromptType,
    TemplateError,
    VariablesError,
    VersionDraft,
    check_limits,
    compile_version,
    render,
    validate_draft,
)

log = logging.getLogger(__name__)
# The largest version number a request may name: stores and other clients keep numbers as 32-bit
# signed integers or JSON doubles, and no prompt has this many versions.
MAX_VERSION = 2**31 - 1

prompts = APIRouter(prefix="/v1/prompts", tags=["prompts"])
subscriptions = Subscriptions()

PromptName = Annotated[str, path_parameter(NAME_PATTERN, f"The prompt's name; matches `{NAME_PATTERN}`.")]
LabelName = Annotated[str, path_parameter(LABEL_PATTERN, f"A label; matches `{LABEL_PATTERN}`.")]
VersionRef = Annotated[
    str, path_parameter(REF_PATTERN, "A version number (`2`) or a label (`production`); labels start with a letter.")
]
DEFAULT_LABEL = "production"


async def get_store(request: Request) -> PromptStore:
    return request.app.state.store


async def get_cache(request: Request) -> RenderCache:
    return request.app.state.render_cache


StoreDep = Annotated[PromptStore, Depends(get_store)]
CacheDep = Annotated[RenderCache, Depends(get_cache)]


class CreatePrompt(VersionDraft):
    """A new prompt and its first version."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field("", max_length=2000)


class MoveLabel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_VERSION)
    expected_version: int | None = Field(
        None, ge=1, le=MAX_VERSION, description="Move only if the label points at this version now (409 otherwise)."
    )


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(
        default_factory=dict, description="The caller's values: each name must be a variable the version declares."
    )
    platform_variables: dict[str, Any] = Field(
        default_factory=dict,
        description="Values a platform service offers every prompt (the gateway: `question`, `context`): "
        "filled in where the version declares them, left out where it does not.",
    )
    label: str | None = Field(None, pattern=LABEL_PATTERN, description="Defaults to `production`.")
    version: int | None = Field(None, ge=1, le=MAX_VERSION, description="A version number instead of a label.")

    @model_validator(mode="after")
    def _one_reference(self) -> RenderRequest:
        if self.label is not None and self.version is not None:
            raise ValueError("give `label` or `version`, not both")
        return self


def _checked(draft: VersionDraft) -> VersionDraft:
    check_limits(draft, at="body.config")
    try:
        validate_draft(draft)
    except TemplateError as error:
        raise Problem(422, str(error), title="Invalid template", errors=error.errors) from None
    return draft


async def _announce(request: Request, action: str, head: dict, version: int | None = None) -> None:
    """Drop this replica's cache now and tell every other consumer through `prompt.updated`."""
    request.app.state.render_cache.drop(head["name"])
    event = PromptUpdated(name=head["name"], action=action, version=version, labels=head["labels"])
    try:
        await request.app.state.sidecar.publish(str(Topic.PROMPT_UPDATED), event.model_dump(mode="json"))
    except DaprError:
        # The write has happened; consumers' time-to-live bounds how long they serve the old target.
        log.warning("prompt.updated not published", extra={"prompt": head["name"], "action": action})


@prompts.post(
    "",
    status_code=201,
    summary="Create a prompt with its first version",
    response_model=None,
    responses={201: {"model": CreatedPrompt}, **problem_responses(409)},
)
async def create_prompt(body: CreatePrompt, request: Request, store: StoreDep, response: Response) -> dict:
    draft = _checked(VersionDraft(**body.model_dump(exclude={"name", "description"})))
    head, version = await store.create_prompt(body.name, body.description, draft)
    await _announce(request, "prompt.created", head, version["version"])
    response.headers["Location"] = f"/v1/prompts/{body.name}"
    return {"prompt": head, "version": with_labels(version, head)}


@prompts.get(
    "", summary="Every prompt, with its labels", response_model=None, responses={200: {"model": list[PromptHead]}}
)
async def list_prompts(store: StoreDep) -> list[dict]:
    return await store.list_prompts()


@prompts.get(
    "/{name}",
    summary="One prompt: description, latest number, labels",
    response_model=None,
    responses={200: {"model": PromptHead}, **problem_responses(404)},
)
async def get_prompt(name: PromptName, store: StoreDep) -> dict:
    return await store.get_prompt(name)


@prompts.post(
    "/{name}/versions",
    status_code=201,
    summary="Add a new immutable version",
    response_model=None,
    responses={201: {"model": PromptVersion}, **problem_responses(404)},
)
async def create_version(name: PromptName, draft: VersionDraft, request: Request, store: StoreDep) -> dict:
    head, version = await store.create_version(name, _checked(draft))
    await _announce(request, "version.created", head, version["version"])
    return with_labels(version, head)


@prompts.get(
    "/{name}/versions",
    summary="Every version of a prompt, oldest first",
    response_model=None,
    responses={200: {"model": list[PromptVersion]}, **problem_responses(404)},
)
async def list_versions(name: PromptName, store: StoreDep) -> list[dict]:
    return await store.list_versions(name)


@prompts.get(
    "/{name}/versions/{ref}",
    summary="One version, by number or by label",
    response_model=None,
    responses={200: {"model": PromptVersion}, **problem_responses(404)},
)
async def get_version(name: PromptName, ref: VersionRef, store: StoreDep) -> dict:
    return await store.get_version(name, int(ref) if ref.isdigit() else ref)


@prompts.put(
    "/{name}/labels/{label}",
    summary="Point a label at a version (ETag-safe)",
    response_model=None,
    responses={200: {"model": PromptHead}, **problem_responses(404, 409)},
)
async def move_label(name: PromptName, label: LabelName, body: MoveLabel, request: Request, store: StoreDep) -> dict:
    head = await store.move_label(name, label, body.version, body.expected_version)
    await _announce(request, "label.moved", head, body.version)
    return head


@prompts.delete(
    "/{name}/labels/{label}",
    summary="Remove a label",
    response_model=None,
    responses={200: {"model": PromptHead}, **problem_responses(404)},
)
async def delete_label(name: PromptName, label: LabelName, request: Request, store: StoreDep) -> dict:
    head = await store.delete_label(name, label)
    await _announce(request, "label.deleted", head)
    return head


@prompts.delete(
    "/{name}",
    status_code=204,
    summary="Delete a prompt: every version and label",
    response_class=Response,
    responses=problem_responses(404),
)
async def delete_prompt(name: PromptName, request: Request, store: StoreDep) -> Response:
    """Its versions' numbers are not given again: a prompt created later under the name numbers
    its versions on from the last one (prompts.store)."""
    await store.delete_prompt(name)
    await _announce(request, "prompt.deleted", {"name": name, "labels": {}})
    return Response(status_code=204)


# Unset fields stay out of the answer: `text` belongs to text prompts only.
@prompts.post(
    "/{name}/render",
    summary="Render a version with variables into messages",
    response_model_exclude_unset=True,
    responses=problem_responses(404),
)
async def render_prompt(name: PromptName, body: RenderRequest, store: StoreDep, cache: CacheDep) -> RenderedPrompt:
    ref: int | str = body.version if body.version is not None else (body.label or DEFAULT_LABEL)
    cached = cache.get(name, ref)
    if cached is None:
        version = await store.get_version(name, ref)
        compiled = compile_version(version)
        cache.put(name, ref, version, compiled)
    else:
        version, compiled = cached.version, cached.compiled
    try:
        # In a worker thread: a render is pure CPU, up to RENDER_TIMEOUT_S, and must not stall the event loop.
        messages = await anyio.to_thread.run_sync(render, compiled, body.variables, body.platform_variables)
    except VariablesError as error:
        raise Problem(
            422,
            "; ".join(f"{e['variable']}: {e['message']}" for e in error.errors),
            title="Invalid variables",
            # Each entry names its field as every 422's `errors` do (`location`), and the variable.
            errors=[{"location": f"body.variables.{e['variable']}", **e} for e in error.errors],
            prompt=name,
            version=version["version"],
        ) from None
    rendered: dict[str, Any] = {
        "name": name,
        "version": version["version"],
        "label": ref if isinstance(ref, str) else None,
        "type": version["type"],
        "messages": messages,
        "config": version.get("config", {}),
    }
    if version["type"] == PromptType.TEXT:
        rendered["text"] = messages[0]["content"]
    return rendered


def _forget_every_prompt(request: Request, event: CloudEvent) -> None:
    # Nobody can tell which prompt changed: forget everything (safe); the DROP that follows
    # leaves the message for a person to look at in the monitor.
    request.app.state.render_cache.drop()


@subscriptions.subscribe(
    Topic.PROMPT_UPDATED,
    route=f"/events/{Topic.PROMPT_UPDATED}",
    payload=PromptUpdated,
    dead_letter_topic=Topic.DEAD_LETTER,
    on_invalid=_forget_every_prompt,
)
def on_prompt_updated(request: Request, event: CloudEvent, updated: PromptUpdated) -> None:
    """Drop this replica's cached versions of the prompt that changed."""
    request.app.state.render_cache.drop(updated.name)
