"""The chat pipeline behind the gateway's /v1/chat/completions:

input rails (guard) → retrieval (features, when the request names a collection) → prompt render
(prompts) → generation (inference) → output rails (guard), each a Dapr service invocation.

The answer is OpenAI's chat completion with two additions: `citations` (the chunks the answer
was grounded in) and `lineage` (model, prompt version, trace id). Streams are checked as they
arrive (gateway.output_stream): no text reaches the client ahead of its output check. Each stage's duration is
recorded for the answer's `Server-Timing` header (see gateway.timing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from pydantic import ValidationError

from gateway.output_stream import UpstreamStream, guarded_stream
from gateway.stages import GuardClient, InferenceClient, PromptNotFound, PromptsClient, SearchClient
from gateway.timing import ServerTiming
from genai_platform.contracts.guard import RailResult
from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS, ChatMessage, PromptReference, error_object
from genai_platform.contracts.prompts import (
    GROUNDING_INSTRUCTIONS,
    RenderedPrompt,
    shown_name,
    variable_name_problem,
)
from genai_platform.contracts.search import SearchHit, SearchResults
from genai_platform.dapr import Sidecar
from genai_platform.errors import Problem, invalid_request, validation_errors
from genai_platform.telemetry import current_trace_id

# `model: "rag/<collection>"` asks for answers grounded in that collection, for clients (the
# OpenAI SDK, LangChain) that cannot send extra fields easily.
RAG_MODEL_PREFIX = "rag/"
# The grounding prompt used when the managed one (`rag-answer`, seeded by prompts) is missing.
BUILTIN_SYSTEM_PROMPT = GROUNDING_INSTRUCTIONS + "{context}"
# Generation settings a rendered prompt may bring, applied unless the request sets them.
PROMPT_SETTINGS = ("temperature", "top_p", "max_tokens", "stop")
# Names the built-in prompt's reason on a grounded answer that used it: the value of this header,
# of `lineage.prompt.fallback` and of the counter's `reason` label.
PROMPT_FALLBACK_HEADER = "X-Prompt-Fallback"
PROMPT_FALLBACKS = Counter(
    "gateway_prompt_fallbacks_total",
    "Grounded chat answers given the built-in prompt instead of the managed one, by reason "
    "(not_found: no such prompt; unavailable: the prompts service did not answer).",
    ["reason"],
)
log = logging.getLogger(__name__)


@dataclass
class ChatPlan:
    """What one chat request turned into before generation: the request for inference (guarded,
    grounded, rendered), the collection and chunks it is grounded in, and the prompt version used."""

    request: dict[str, Any]
    collection: str | None
    citations: list[SearchHit] = field(default_factory=list)
    prompt: dict[str, Any] | None = None
    timing: ServerTiming = field(default_factory=ServerTiming)
    usage: dict[str, Any] | None = None  # OpenAI's usage of a streamed answer, once it has ended

    @property
    def prompt_fallback(self) -> str | None:
        """Why the built-in grounding prompt stood in for the managed one (`not_found`,
        `unavailable`); None when it did not."""
        return (self.prompt or {}).get("fallback")


@dataclass(frozen=True)
class PipelineSettings:
    """The RAG prompt's name, how many chunks to retrieve, timeouts in seconds (stages, generation),
    the least time between two output checks of a stream (0: as soon as the last one answered),
    and the most tokens one answer may ask for (`GATEWAY_MAX_TOKENS`)."""

    rag_prompt: str
    retrieval_k: int
    timeout: float
    generation_timeout: float
    guard_stream_window_s: float = 0.0
    max_tokens: int = MAX_COMPLETION_TOKENS


class ChatPipeline:
    """The stages of a chat request, in order; each stage's answer is its service's contract.

    Raises `Problem`: 422 for a request without messages, 400 when the input rails refuse it,
    a stage's own 4xx (a prompt that does not exist), 503 when a stage cannot answer.
    """

    def __init__(self, sidecar: Sidecar, settings: PipelineSettings) -> None:
        self._settings = settings
        self.guard = GuardClient(sidecar, "guard", settings.timeout)
        self.search = SearchClient(sidecar, "features", settings.timeout)
        self.prompts = PromptsClient(sidecar, "prompts", settings.timeout)
        self.inference = InferenceClient(sidecar, "inference", settings.timeout)

    @property
    def settings(self) -> PipelineSettings:
        """The pipeline's settings (the completions pipeline shares them)."""
        return self._settings

    # --- before generation --------------------------------------------------------------------

    async def plan(self, body: dict[str, Any], request_id: str, timing: ServerTiming | None = None) -> ChatPlan:
        """Input rails (with retrieval beside them), then prompt render when asked for: the request
        inference gets. Features may see a question the rails then refuse or redact (it only
        embeds and searches it); nothing else does, and only what the rails let through is used.

        `body` is the client's OpenAI chat request plus our extensions (`collection`, `prompt`),
        which are taken out of it. The input rails see everything the model will read from the
        client: every message of every role (content parts as their joined text) and every
        string of the prompt's variables; what goes on is what they let through (redacted).
        Raises `Problem`: 422 for messages or a prompt reference that are not valid (a prompt
        variable the gateway fills, `question` or `context`, named by its location), 400 naming
        the rails that refused the input, 404 for a collection with no indexed document or a
        prompt that does not exist.
        """
        timing = timing or ServerTiming()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Problem(422, "`messages` must be a non-empty list of chat messages.")
        turns = _chat_messages(messages)
        collection = body.pop("collection", None)
        model = str(body.get("model") or "")
        if model.startswith(RAG_MODEL_PREFIX):
            named = model[len(RAG_MODEL_PREFIX) :]
            if collection and named and collection != named:
                # Either could be meant: answering from one would silently ignore the other.
                message = f'`collection` ("{collection}") and `model` ("{model}") name different collections.'
                raise invalid_request([{"location": "body.collection", "message": message}], detail=message)
            collection = collection or named
            if not collection:
                message = '`model: "rag/<collection>"` names no collection.'
                raise invalid_request([{"location": "body.model", "message": message}], detail=message)
            body.pop("model")
        reference = prompt_reference(body.pop("prompt", None))
        sent = [turn.model_dump(exclude_none=True) for turn in turns]

        # Retrieval starts beside the input rails (bench/chat: it was the longest stage before
        # generation). What it finds is used only when the rails allow the request and let the
        # question through unchanged; a refusal drops it, a redacted question is searched again.
        # Nothing reaches inference (or prompts) before the rails' verdict.
        asked = _last_user_text(sent) if collection else ""
        early = asyncio.create_task(self._retrieve(asked, collection, timing)) if asked and collection else None
        try:
            with timing.stage("guard-in"):
                verdict = await self.guard.check_input(sent, request_id, reference.variables if reference else None)
            if not verdict.allowed:
                checked = (*verdict.checked, *verdict.checked_variables)
                raise refused(verdict.blocked_by, [rail for text in checked for rail in text.rails], param="messages")
            body["messages"] = verdict.messages
            plan = ChatPlan(request=body, collection=collection, timing=timing)
            question = _last_user_text(body["messages"])
            if collection and question:
                if early is None or question != asked:
                    await _dropped(early)
                    early = asyncio.create_task(self._retrieve(question, collection, timing))
                plan.citations = (await early).results
        finally:
            await _dropped(early)
        if collection or reference:
            with timing.stage("prompt"):
                await self._render(plan, reference, verdict.variables or {}, question)
        return plan

    async def _retrieve(self, question: str, collection: str, timing: ServerTiming) -> SearchResults:
        with timing.stage("retrieve"):
            return await self.search.search(question, k=self._settings.retrieval_k, collection=collection)

    async def _render(
        self, plan: ChatPlan, reference: PromptReference | None, variables: dict[str, Any], question: str
    ) -> None:
        """Put the rendered prompt in the request: the named one, else the RAG prompt, else the built-in
        (when the RAG prompt does not exist or the prompts service does not answer; `plan.prompt`
        then names the reason as `fallback`, see `ChatPlan.prompt_fallback`).

        `variables` are the client's, as the input rails let them through, each one a variable the
        version must declare; the gateway's `question` and `context` go as platform variables,
        filled in where the version declares them. A client's own `question` or `context` is left
        out so that nothing a client sends can stand in for them (`prompt_reference` refuses them,
        so this is the second line).
        """
        context = _context(plan.citations)
        name = reference.name if reference else self._settings.rag_prompt
        try:
            rendered = await self.prompts.render(
                name,
                {key: value for key, value in variables.items() if key not in GATEWAY_VARIABLES},
                platform_variables={"question": question, "context": context},
                label=reference.label if reference else None,
                version=reference.version if reference else None,
            )
        except Problem as problem:
            # A prompt the client named is theirs to fix or wait for. The RAG prompt is the
            # platform's own: missing, or its service down (5xx, unreachable), the answer is
            # grounded with the built-in one rather than refused, and says so.
            missing = isinstance(problem, PromptNotFound)
            if reference is not None or not (missing or problem.status >= 500):
                raise
            reason = "not_found" if missing else "unavailable"
            if not missing:
                log.warning("prompts did not answer (%s): the built-in RAG prompt grounds this answer", problem.status)
            PROMPT_FALLBACKS.labels(reason=reason).inc()
            system = {"role": "system", "content": BUILTIN_SYSTEM_PROMPT.format(context=context)}
            plan.request["messages"] = [system, *plan.request["messages"]]
            plan.prompt = {"name": "builtin", "version": None, "fallback": reason}
            return
        _apply_prompt(plan, rendered, self._settings.max_tokens)

    # --- generation and output rails ----------------------------------------------------------

    async def complete(self, plan: ChatPlan, request_id: str) -> dict[str, Any]:
        """Generate the whole answer, then check each choice with the output rails.

        A refused choice is emptied with `finish_reason: content_filter`. The answer is OpenAI's
        chat completion plus `citations` and `lineage`.
        """
        with plan.timing.stage("inference"):
            answer = await self.inference.complete(plan.request, timeout=self._settings.generation_timeout)
        for choice in answer.get("choices", []):
            message = choice.get("message") or {}
            with plan.timing.stage("guard-out"):
                verdict = await self.guard.check_output(message.get("content") or "", request_id)
            if verdict.allowed:
                message["content"] = verdict.text
            else:
                message["content"] = ""
                choice["finish_reason"] = "content_filter"
        answer["citations"] = _public_citations(plan.citations)
        answer["lineage"] = self._lineage(plan, answer.get("model"))
        return answer

    async def stream(self, plan: ChatPlan, request_id: str, *, report_timing: bool = True) -> AsyncIterator[bytes]:
        """Relay inference's SSE stream as OpenAI's, releasing text only as the guard clears it.

        A first delta carries the role as soon as generation begins; then each piece the
        guard's output rails released (gateway.output_stream: the guard holds back only what a
        rail could still judge differently); a block ends the text with `content_filter`. The
        finish chunk adds `citations`, `lineage` and (with `report_timing`) `server_timing`;
        with the request's `stream_options.include_usage`, usage follows in its own chunk with
        empty `choices`, as OpenAI's does (and, with vLLM's `continuous_usage_stats`, the usage so
        far on every chunk). The usage is also kept in `plan.usage` (quota), also when the client
        leaves mid-answer: inference reports it on every chunk.
        Raises `Problem`: 503 when a stage cannot answer, 502 when the model fails mid-answer
        (after the headers: the caller sends it as an error event, see `error_event`).
        """
        timing = plan.timing
        options = plan.request.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        # vLLM's extension, as inference serves it: the usage so far on every chunk.
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        blocked = False

        def with_usage(chunk: dict[str, Any]) -> dict[str, Any]:
            # OpenAI: with include_usage, "all other chunks will also include a usage field, but
            # with a null value"; vLLM's continuous_usage_stats puts the usage so far there.
            if not include_usage:
                return chunk
            return {**chunk, "usage": upstream.usage if continuous else None}

        # `inference` is the time the upstream stream was open; the guard's checks (`guard-out`)
        # run while it is, so the two overlap.
        opened = time.perf_counter()
        async with self.inference.stream(plan.request, timeout=self._settings.generation_timeout) as chunks:
            upstream = UpstreamStream(chunks)
            try:
                envelope = await upstream.start()

                def event(choice: dict[str, Any]) -> bytes:
                    return _sse(with_usage({**envelope, "choices": [choice]}))

                yield event(_delta("", role="assistant"))
                checked = guarded_stream(
                    upstream.texts(),
                    self.guard,
                    request_id,
                    window_s=self._settings.guard_stream_window_s,
                    timing=timing,
                )
                # Closed here, not by the garbage collector, when the client leaves or a piece is blocked.
                async with contextlib.aclosing(checked):
                    async for step in checked:
                        if step.blocked:
                            blocked = True
                            break
                        timing.since_start("first-token")
                        yield event(_delta(step.released))
            finally:
                # What inference used so far, also when the client left mid-answer: it is charged.
                plan.usage = upstream.usage
            if upstream.first_text_at is not None:
                timing.add("inference-first", upstream.first_text_at - opened)
            timing.add("inference", time.perf_counter() - opened)
        finish = "content_filter" if blocked else upstream.finish_reason
        ending = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
        last = with_usage({**envelope, "choices": [ending]})
        last["citations"] = _public_citations(plan.citations)
        last["lineage"] = self._lineage(plan, envelope.get("model"))
        if report_timing:
            last["server_timing"] = timing.header()
        yield _sse(last)
        if include_usage and upstream.usage:
            yield _sse({**envelope, "choices": [], "usage": upstream.usage})
        yield b"data: [DONE]\n\n"

    def _lineage(self, plan: ChatPlan, model: Any) -> dict[str, Any]:
        return {"model": model, "prompt": plan.prompt, "collection": plan.collection, "trace_id": current_trace_id()}


# The variables the gateway fills for every rendered prompt: the last user turn, the retrieved chunks.
GATEWAY_VARIABLES = {
    "question": "the last user message (send the question as that message)",
    "context": "the chunks retrieved from the collection",
}


def prompt_reference(value: Any) -> PromptReference | None:
    """The request's `prompt` (a name, or `{name, label | version, variables}`) as a `PromptReference`.

    Raises a 422 `Problem` whose `errors` name each wrong field (`body.prompt.variables.question`
    for a variable the gateway fills: a client's value would replace the retrieved context or
    the question the rails checked, so it is refused rather than silently overridden).
    """
    if value is None:
        return None
    try:
        reference = PromptReference.model_validate({"name": value} if isinstance(value, str) else value)
    except ValidationError as error:
        raise _invalid(error, ("body", "prompt")) from None
    # Names first, before the guard reads any value: a key that cannot be a variable is refused
    # here; one the version does not declare is the prompts service's 422 at render.
    errors = [
        {"location": f"body.prompt.variables.{shown_name(name)}", "message": problem}
        for name in reference.variables
        if (problem := variable_name_problem(name)) is not None
    ]
    errors += [
        {"location": f"body.prompt.variables.{name}", "message": f"filled by the gateway: {filled}"}
        for name, filled in GATEWAY_VARIABLES.items()
        if name in reference.variables
    ]
    if errors:
        raise invalid_request(errors)
    return reference


def refused(blocked_by: list[str], results: Iterable[RailResult] = (), *, param: str | None = None) -> Problem:
    """The 400 problem for input the rails refused, naming the rails (`blocked_by`), with OpenAI's
    `error` object (`code` `content_filter`, Azure OpenAI's code for a filtered prompt) so OpenAI's
    SDKs show the message: without it they showed only "Error code: 400" (a new-user trial).

    When a blocking rail's finding is over a limit (the length rail's, among the rails' `results`),
    the problem names it as every limit of the platform is named: `limit` (the guard policy's
    setting, e.g. `length.max_tokens`) and `limit_value`, and the detail says by how much. When
    that limit alone refused it, the code is OpenAI's `context_length_exceeded` with `param` (the
    request's `messages` or `prompt`), as inference answers a prompt past the model's context: a
    client that shortens its history on that code must see it whichever of the two caught it.
    """
    over = next(
        (f for r in results if r.verdict == "fail" and r.rail in blocked_by for f in r.findings if f.limit),
        None,
    )
    detail = f"The request was refused by the input rail(s): {', '.join(blocked_by)}."
    limit = {}
    if over is not None:
        detail = f"{detail[:-1]} ({over.detail})."
        limit = {"limit": over.limit, "limit_value": over.limit_value}
    return Problem(
        400,
        detail,
        title="Refused by the guard",
        type_="urn:genai-platform:guard:refused",
        blocked_by=blocked_by,
        error=error_object(detail, param=param, code="context_length_exceeded")
        if over is not None and len(blocked_by) == 1
        else error_object(detail, code="content_filter"),
        **limit,
    )


def _chat_messages(messages: list[Any]) -> list[ChatMessage]:
    """The messages as the OpenAI contract reads them (roles in lower case); a 422 naming what is wrong."""
    try:
        return [ChatMessage.model_validate(message) for message in messages]
    except ValidationError as error:
        raise _invalid(error, ("body", "messages")) from None


def _invalid(error: ValidationError, prefix: tuple[str, ...]) -> Problem:
    return invalid_request(validation_errors(error.errors(), prefix))


def _context(citations: list[SearchHit]) -> str:
    """The retrieved chunks as numbered context lines, or a note that nothing was found."""
    lines = [f"[{i + 1}] {hit.title or hit.document_id}: {hit.text}" for i, hit in enumerate(citations)]
    return "\n\n".join(lines) or "(nothing found)"


def _apply_prompt(plan: ChatPlan, rendered: RenderedPrompt, max_tokens: int) -> None:
    """Put a rendered prompt in the request, with its generation settings unless the request has them.

    The rendered system messages lead the conversation (chat templates expect the system turn
    first, and SmolLM2's adds a default one when the first turn is not a system turn), so the
    seeded `rag-answer` prompt gives exactly the built-in grounding. The other rendered messages
    speak for the last user turn; earlier turns stay as the client sent them. A version's
    `max_tokens` is a default, taken up to `max_tokens`: the prompts service refuses more than
    MAX_COMPLETION_TOKENS, but a version stored before it did, or a gateway set lower, may hold
    more, and past it inference would refuse every chat the version renders for.
    """
    messages = [m.model_dump() for m in rendered.messages] or [{"role": "user", "content": rendered.text or ""}]
    turns = plan.request["messages"]
    history = turns[:-1] if turns[-1].get("role") == "user" else turns
    system = [m for m in messages if m["role"] == "system"]
    plan.request["messages"] = [*system, *history, *(m for m in messages if m["role"] != "system")]
    for key, value in rendered.config.items():
        if key in PROMPT_SETTINGS:
            plan.request.setdefault(key, min(value, max_tokens) if key == "max_tokens" else value)
    plan.prompt = {"name": rendered.name, "version": rendered.version}


async def _dropped(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` unless it is done, and wait for it; its result or failure is not wanted."""
    if task is not None and not task.done():
        task.cancel()
    if task is not None:
        await asyncio.gather(task, return_exceptions=True)


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _delta(text: str, role: str | None = None) -> dict[str, Any]:
    """A stream chunk's choice carrying `text` (and the `role`, in the first), as OpenAI's are."""
    delta = {"role": role, "content": text} if role else {"content": text}
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user turn (content parts joined), the question retrieval answers."""
    for message in reversed(messages):
        if str(message.get("role")).lower() == "user":
            return ChatMessage.model_validate(message).text()
    return ""


def _public_citations(citations: list[SearchHit]) -> list[dict[str, Any]]:
    """What an answer cites of each chunk: its document, title, id and score (not its text)."""
    return [
        {"document_id": hit.document_id, "title": hit.title, "chunk_id": hit.chunk_id, "score": hit.score}
        for hit in citations
    ]
