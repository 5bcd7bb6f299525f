"""Typed clients of the chat pipeline's stages, each a Dapr service invocation through one sidecar.

guard (input and output rails, the streaming step), features (search), prompts (render) and
inference (OpenAI chat completions). The guard's, features' and prompts' answers are parsed with
the contracts their routes declare (genai_platform.contracts); inference's are OpenAI's chat
completion and chunk objects, relayed as dicts so every field OpenAI or the engine adds passes
through unchanged.

Errors, mapped once here for the whole pipeline: a 4xx problem from a stage is the client's to
see and is raised as that `Problem` (`PromptNotFound` for a prompt that does not exist); a stage
that cannot be reached or fails is a 503 `Problem` with `Retry-After: 5`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from gateway.batching import Coalescer
from genai_platform.contracts.guard import (
    MAX_STREAM_STEPS,
    GuardStreamStep,
    GuardStreamStepRequest,
    GuardStreamStepResults,
    GuardStreamSteps,
    GuardVerdict,
    InputVerdict,
)
from genai_platform.contracts.prompts import RenderedPrompt
from genai_platform.contracts.search import SearchResults
from genai_platform.dapr import Sidecar
from genai_platform.errors import PROBLEM_JSON, Problem

M = TypeVar("M", bound=BaseModel)


class PromptNotFound(Problem):
    """The prompt (or its label or version) named for a render does not exist (the prompts service's 404)."""


class Stage:
    """One stage's app, reached through the sidecar with a default timeout in seconds."""

    def __init__(self, sidecar: Sidecar, app_id: str, timeout: float) -> None:
        self.sidecar = sidecar
        self.app_id = app_id
        self.timeout = timeout

    async def post(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """POST `body` as JSON and return the JSON answer; raises `Problem` (see the module doc)."""
        try:
            response = await self.sidecar.invoke(self.app_id, path, json_body=body, timeout=timeout or self.timeout)
        except httpx.HTTPError as error:
            raise Problem(
                503, f"The {self.app_id} service cannot be reached right now.", headers={"Retry-After": "5"}
            ) from error
        if response.status_code >= 400:
            raise await upstream_problem(response, self.app_id)
        return response.json()

    async def answer(self, path: str, body: dict[str, Any], model: type[M]) -> M:
        """POST and parse the answer with the stage's contract `model`."""
        return model.model_validate(await self.post(path, body))


class GuardClient(Stage):
    """The guard's rails: the input gate, the output gate, and one step of a checked stream.

    Stream steps of every stream this client relays go through one `Coalescer`: the steps asked
    for while a guard call is in flight go together in the next (`POST v1/guard/output/stream/batch`).
    """

    def __init__(self, sidecar: Sidecar, app_id: str, timeout: float) -> None:
        super().__init__(sidecar, app_id, timeout)
        self._steps = Coalescer(self._stream_steps, MAX_STREAM_STEPS)

    async def check_input(
        self, messages: list[dict[str, Any]], request_id: str, variables: dict[str, Any] | None = None
    ) -> InputVerdict:
        """The verdict on a chat request's messages (every role) and a prompt's `variables`, with
        both as the model may see them (redacted; content parts joined into one text)."""
        body: dict[str, Any] = {"messages": messages, "request_id": request_id}
        if variables is not None:
            body["variables"] = variables
        return await self.answer("v1/guard/input", body, InputVerdict)

    async def check_text(self, text: str, request_id: str) -> GuardVerdict:
        """The input rails' verdict on one text (a completion's prompt), with the text the model may see."""
        return await self.answer("v1/guard/input", {"text": text, "request_id": request_id}, GuardVerdict)

    async def check_output(self, text: str, request_id: str) -> GuardVerdict:
        """The verdict on a whole answer, with the text that may leave (redacted). The guard's JSON
        rail is never asked for: a `response_format` other than text is refused before generation
        (genai_platform.contracts.openai, REFUSED_CHAT)."""
        body = {"text": text, "request_id": request_id}
        return await self.answer("v1/guard/output", body, GuardVerdict)

    async def stream_step(self, pending: str, request_id: str, *, final: bool, chunk: str = "") -> GuardStreamStep:
        """Add `chunk` to `pending` (the last step's); release, checked, what no output rail could
        still change (all of it when `final`). See gateway.output_stream."""
        step = GuardStreamStepRequest(pending=pending, chunk=chunk, final=final, request_id=request_id)
        return await self._steps.submit(step)

    async def _stream_steps(self, steps: list[GuardStreamStepRequest]) -> list[GuardStreamStep]:
        body = GuardStreamSteps(steps=steps).model_dump()
        return (await self.answer("v1/guard/output/stream/batch", body, GuardStreamStepResults)).steps


class SearchClient(Stage):
    """The features service's search."""

    async def search(self, query: str, *, k: int, collection: str, mode: str = "hybrid") -> SearchResults:
        """The `k` chunks of `collection` that best answer `query`, best first.

        Raises a 404 `Problem` naming the collection when no indexed document is in it (features'
        `collection_must_exist`): an answer grounded in nothing must not pass for a grounded one.
        """
        body = {"query": query, "k": k, "collection": collection, "mode": mode, "collection_must_exist": True}
        return await self.answer("v1/search", body, SearchResults)


class PromptsClient(Stage):
    """The prompts service's render."""

    async def render(
        self,
        name: str,
        variables: dict[str, Any],
        *,
        platform_variables: dict[str, Any] | None = None,
        label: str | None = None,
        version: int | None = None,
    ) -> RenderedPrompt:
        """Render prompt `name` (its `production` label unless `label` or `version` says otherwise)
        with the client's `variables` (each one the version must declare) and the gateway's
        `platform_variables` (filled in where the version declares them).

        Raises `PromptNotFound` when there is no such prompt, label or version; a 422 `Problem`
        naming each wrong variable at `body.prompt.variables.<name>` (where the client sent it).
        """
        body: dict[str, Any] = {"variables": variables, "platform_variables": platform_variables or {}}
        if label is not None:
            body["label"] = label
        if version is not None:
            body["version"] = version
        try:
            return await self.answer(f"v1/prompts/{quote(name, safe='')}/render", body, RenderedPrompt)
        except Problem as problem:
            if problem.status == 404:
                raise PromptNotFound(404, problem.detail, title=problem.title, **problem.extensions) from problem
            if problem.status == 422 and isinstance(problem.extensions.get("errors"), list):
                # The prompts service names `body.variables.<name>`; the client sent `prompt.variables`.
                for error in problem.extensions["errors"]:
                    location = error.get("location") if isinstance(error, dict) else None
                    if isinstance(location, str) and location.startswith("body.variables."):
                        error["location"] = "body.prompt." + location.removeprefix("body.")
            raise


CHAT_COMPLETIONS = "v1/chat/completions"
COMPLETIONS = "v1/completions"
# A text completion's token-id prompt as text, for the input rails (inference's tokenizer).
DETOKENIZE = "v1/detokenize"


class InferenceClient(Stage):
    """The inference service's OpenAI chat completions (or, with `path=COMPLETIONS`, text
    completions), whole or streamed."""

    async def complete(
        self, request: dict[str, Any], *, timeout: float, path: str = CHAT_COMPLETIONS
    ) -> dict[str, Any]:
        """One completion (OpenAI's object) for an OpenAI chat (or text completion) request."""
        return await self.post(path, {**request, "stream": False}, timeout=timeout)

    @asynccontextmanager
    async def stream(
        self, request: dict[str, Any], *, timeout: float, path: str = CHAT_COMPLETIONS
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """The chunks (OpenAI's `chat.completion.chunk`, or `text_completion`, objects) of a streamed
        completion, as they arrive.

        Usage is asked for on every chunk (`stream_options.include_usage` and vLLM's
        `continuous_usage_stats`), so a stream cut off mid-answer still says what it used.
        """
        options = {"include_usage": True, "continuous_usage_stats": True}
        body = {**request, "stream": True, "stream_options": options}
        async with self.sidecar.invoke_stream(self.app_id, path, json_body=body, timeout=timeout) as up:
            if up.status_code != 200:
                raise await upstream_problem(up, self.app_id)
            yield sse_events(up)


async def upstream_problem(response: httpx.Response, app_id: str) -> Problem:
    """A client error from an app is the client's to see; anything else is the platform's (503),
    whose detail adds the app's own when the app answered a 503 problem itself (inference while no
    version is served: "its alias was deleted"; a new-user trial saw only "cannot answer")."""
    await response.aread()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if 400 <= response.status_code < 500 and isinstance(body, dict) and "detail" in body:
        extensions = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "instance")}
        kind = body.get("type") if isinstance(body.get("type"), str) else "about:blank"
        return Problem(response.status_code, body["detail"], title=body.get("title"), type_=kind, **extensions)
    detail = f"The {app_id} service cannot answer right now."
    # The app's own problem, not daprd's error (`errorCode`, no problem+json): it is written for clients.
    own = PROBLEM_JSON in response.headers.get("content-type", "") and isinstance(body, dict)
    if response.status_code == 503 and own and isinstance(body.get("detail"), str):
        detail = f"{detail[:-1]}: {body['detail']}"
    retry = response.headers.get("retry-after", "5") if response.status_code == 503 else "5"
    return Problem(503, detail, headers={"Retry-After": retry if retry.isdigit() else "5"})


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream's `data:` lines, up to `[DONE]`."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            continue
