"""The chat pipeline behind the gateway's /v1/chat/completions:

input rails (guard) → retrieval (features, when the request names a collection) → prompt render
(prompts) → generation (inference) → output rails (guard), each a Dapr service invocation.

The answer is OpenAI's chat completion with two additions: `citations` (the chunks the answer
was grounded in) and `lineage` (model, prompt version, trace id). Streams are checked sentence
by sentence: no text reaches the client ahead of its output check. Each stage's duration is
recorded for the answer's `Server-Timing` header (see gateway.timing).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.stages import GuardClient, InferenceClient, PromptNotFound, PromptsClient, SearchClient
from gateway.timing import ServerTiming
from genai_platform.contracts.prompts import GROUNDING_INSTRUCTIONS, RenderedPrompt
from genai_platform.contracts.search import SearchHit
from genai_platform.dapr import Sidecar
from genai_platform.errors import Problem
from genai_platform.sentences import may_end_sentence
from genai_platform.telemetry import current_trace_id

# `model: "rag/<collection>"` asks for answers grounded in that collection, for clients (the
# OpenAI SDK, LangChain) that cannot send extra fields easily.
RAG_MODEL_PREFIX = "rag/"
# The grounding prompt used when the managed one (`rag-answer`, seeded by prompts) is missing.
BUILTIN_SYSTEM_PROMPT = GROUNDING_INSTRUCTIONS + "{context}"
# Generation settings a rendered prompt may bring, applied unless the request sets them.
PROMPT_SETTINGS = ("temperature", "top_p", "max_tokens", "stop")


@dataclass
class ChatPlan:
    """What one chat request turned into before generation: the request for inference (guarded,
    grounded, rendered), the collection and chunks it is grounded in, and the prompt version used."""

    request: dict[str, Any]
    collection: str | None
    citations: list[SearchHit] = field(default_factory=list)
    prompt: dict[str, Any] | None = None
    timing: ServerTiming = field(default_factory=ServerTiming)


@dataclass(frozen=True)
class PipelineSettings:
    """The RAG prompt's name, how many chunks to retrieve, and timeouts in seconds (stages, generation)."""

    rag_prompt: str
    retrieval_k: int
    timeout: float
    generation_timeout: float


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

    # --- before generation --------------------------------------------------------------------

    async def plan(self, body: dict[str, Any], request_id: str, timing: ServerTiming | None = None) -> ChatPlan:
        """Input rails, then retrieval and prompt render when asked for: the request inference gets.

        `body` is the client's OpenAI chat request plus our extensions (`collection`, `prompt`),
        which are taken out of it.
        """
        timing = timing or ServerTiming()
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Problem(422, "`messages` must be a non-empty list of chat messages.")
        collection = body.pop("collection", None)
        model = str(body.get("model") or "")
        if model.startswith(RAG_MODEL_PREFIX):
            collection = collection or model[len(RAG_MODEL_PREFIX) :]
            body.pop("model")
        prompt_ref = body.pop("prompt", None)

        with timing.stage("guard-in"):
            verdict = await self.guard.check_input(messages, request_id)
        if not verdict.allowed:
            raise Problem(
                400,
                f"The request was refused by the input rail(s): {', '.join(verdict.blocked_by)}.",
                title="Refused by the guard",
                type_="urn:genai-platform:guard:refused",
                blocked_by=verdict.blocked_by,
            )
        body["messages"] = verdict.messages
        plan = ChatPlan(request=body, collection=collection, timing=timing)

        question = _last_user_text(body["messages"])
        if collection and question:
            with timing.stage("retrieve"):
                found = await self.search.search(question, k=self._settings.retrieval_k, collection=collection)
            plan.citations = found.results
        if collection or prompt_ref:
            with timing.stage("prompt"):
                await self._render(plan, prompt_ref, question)
        return plan

    async def _render(self, plan: ChatPlan, prompt_ref: Any, question: str) -> None:
        """Put the rendered prompt in the request: the named one, else the RAG prompt, else the built-in."""
        context = _context(plan.citations)
        reference = prompt_ref if isinstance(prompt_ref, dict) else {"name": prompt_ref or self._settings.rag_prompt}
        variables = {"question": question, "context": context, **(reference.get("variables") or {})}
        try:
            rendered = await self.prompts.render(
                reference["name"], variables, label=reference.get("label"), version=reference.get("version")
            )
        except PromptNotFound:
            if prompt_ref is not None:
                raise
            # No managed RAG prompt: ground the answer with the built-in one, and say so.
            system = {"role": "system", "content": BUILTIN_SYSTEM_PROMPT.format(context=context)}
            plan.request["messages"] = [system, *plan.request["messages"]]
            plan.prompt = {"name": "builtin", "version": None}
            return
        _apply_prompt(plan, rendered)

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
                verdict = await self.guard.check_output(
                    message.get("content") or "", request_id, _json_mode(plan.request)
                )
            if verdict.allowed:
                message["content"] = verdict.text
            else:
                message["content"] = ""
                choice["finish_reason"] = "content_filter"
        answer["citations"] = _public_citations(plan.citations)
        answer["lineage"] = self._lineage(plan, answer.get("model"))
        return answer

    async def stream(self, plan: ChatPlan, request_id: str, *, report_timing: bool = True) -> AsyncIterator[bytes]:
        """Relay inference's SSE stream, releasing text only as guard clears it.

        Text is held until it may end a sentence (genai_platform.sentences), then the guard's
        stream step releases what it passed; a block ends the text with `content_filter`. The
        last event adds `citations`, `lineage`, usage and (with `report_timing`) `server_timing`.
        """
        pending, template, finish, usage, blocked = "", None, None, None, False
        timing = plan.timing
        # `inference` is the time the upstream stream was open, less the output checks made
        # while it was (reading pauses during each): the two add up to the stream's wall time.
        opened = time.perf_counter()
        async with self.inference.stream(plan.request, timeout=self._settings.generation_timeout) as chunks:
            async for chunk in chunks:
                template = template or {k: chunk.get(k) for k in ("id", "object", "created", "model")}
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    text = (choice.get("delta") or {}).get("content") or ""
                    if blocked or not text:
                        continue
                    if "inference-first" not in timing.durations_ms:
                        timing.add("inference-first", time.perf_counter() - opened)
                    pending += text
                    if may_end_sentence(pending, text):
                        with timing.stage("guard-out"):
                            step = await self.guard.stream_step(pending, request_id, final=False)
                        pending, blocked = step.pending, step.blocked
                        if step.released:
                            timing.since_start("first-token")
                            yield _sse({**template, "choices": [_delta(step.released)]})
            checked_s = timing.durations_ms.get("guard-out", 0.0) / 1000
            timing.add("inference", time.perf_counter() - opened - checked_s)
        if not blocked:
            with timing.stage("guard-out"):
                step = await self.guard.stream_step(pending, request_id, final=True)
            blocked = step.blocked
            if step.released and not blocked:
                timing.since_start("first-token")
                yield _sse({**(template or {}), "choices": [_delta(step.released)]})
        last = {
            **(template or {}),
            "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter" if blocked else finish}],
        }
        last["citations"] = _public_citations(plan.citations)
        last["lineage"] = self._lineage(plan, (template or {}).get("model"))
        if usage:
            last["usage"] = usage
        if report_timing:
            last["server_timing"] = timing.header()
        yield _sse(last)
        yield b"data: [DONE]\n\n"

    def _lineage(self, plan: ChatPlan, model: Any) -> dict[str, Any]:
        return {"model": model, "prompt": plan.prompt, "collection": plan.collection, "trace_id": current_trace_id()}


def _context(citations: list[SearchHit]) -> str:
    """The retrieved chunks as numbered context lines, or a note that nothing was found."""
    lines = [f"[{i + 1}] {hit.title or hit.document_id}: {hit.text}" for i, hit in enumerate(citations)]
    return "\n\n".join(lines) or "(nothing found)"


def _apply_prompt(plan: ChatPlan, rendered: RenderedPrompt) -> None:
    """Put a rendered prompt in the request, with its generation settings unless the request has them.

    The rendered system messages lead the conversation (chat templates expect the system turn
    first, and SmolLM2's adds a default one when the first turn is not a system turn), so the
    seeded `rag-answer` prompt gives exactly the built-in grounding. The other rendered messages
    speak for the last user turn; earlier turns stay as the client sent them.
    """
    messages = [m.model_dump() for m in rendered.messages] or [{"role": "user", "content": rendered.text or ""}]
    turns = plan.request["messages"]
    history = turns[:-1] if turns[-1].get("role") == "user" else turns
    system = [m for m in messages if m["role"] == "system"]
    plan.request["messages"] = [*system, *history, *(m for m in messages if m["role"] != "system")]
    for key, value in rendered.config.items():
        if key in PROMPT_SETTINGS:
            plan.request.setdefault(key, value)
    plan.prompt = {"name": rendered.name, "version": rendered.version}


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _delta(text: str) -> dict[str, Any]:
    return {"index": 0, "delta": {"content": text}, "finish_reason": None}


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


def _json_mode(request: dict[str, Any]) -> dict[str, Any]:
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return {"json_schema": (response_format.get("json_schema") or {}).get("schema")}
    return {"json_mode": response_format.get("type") == "json_object"}


def _public_citations(citations: list[SearchHit]) -> list[dict[str, Any]]:
    """What an answer cites of each chunk: its document, title, id and score (not its text)."""
    return [
        {"document_id": hit.document_id, "title": hit.title, "chunk_id": hit.chunk_id, "score": hit.score}
        for hit in citations
    ]
