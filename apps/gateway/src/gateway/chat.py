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
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.timing import ServerTiming
from genai_platform.dapr import Sidecar
from genai_platform.errors import Problem
from genai_platform.telemetry import current_trace_id

# `model: "rag/<collection>"` asks for answers grounded in that collection, for clients (the
# OpenAI SDK, LangChain) that cannot send extra fields easily.
RAG_MODEL_PREFIX = "rag/"
# Guard releases whole sentences only, so a stream step is worth a call once one may be complete:
# guard's rule is an end mark (maybe closed by quotes or brackets) followed by whitespace, or a
# newline. The whitespace usually comes with the next token, so the check looks at the end of
# everything pending, not at the new token alone.
SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f\u2026][\"'\u201d\u2019)\]]*\s|\n")
# How far before a new token an end mark it completes may sit (closing quotes and brackets).
SENTENCE_END_REACH = 8
BUILTIN_SYSTEM_PROMPT = (
    "Answer the question using only the context below. If the context does not hold the answer, say so.\n\n"
    "Context:\n{context}"
)


@dataclass
class ChatPlan:
    """What one chat request turned into before generation."""

    request: dict[str, Any]
    collection: str | None
    citations: list[dict[str, Any]] = field(default_factory=list)
    prompt: dict[str, Any] | None = None
    timing: ServerTiming = field(default_factory=ServerTiming)


@dataclass(frozen=True)
class PipelineSettings:
    rag_prompt: str
    retrieval_k: int
    timeout: float
    generation_timeout: float


class ChatPipeline:
    def __init__(self, sidecar: Sidecar, settings: PipelineSettings) -> None:
        self._sidecar = sidecar
        self._settings = settings

    # --- before generation --------------------------------------------------------------------

    async def plan(self, body: dict[str, Any], request_id: str, timing: ServerTiming | None = None) -> ChatPlan:
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
            guarded = await self._call("guard", "v1/guard/input", {"messages": messages, "request_id": request_id})
        if not guarded.get("allowed", False):
            rails = guarded.get("blocked_by", [])
            raise Problem(
                400,
                f"The request was refused by the input rail(s): {', '.join(rails)}.",
                title="Refused by the guard",
                type_="urn:genai-platform:guard:refused",
                blocked_by=rails,
            )
        body["messages"] = guarded["messages"]
        plan = ChatPlan(request=body, collection=collection, timing=timing)

        question = _last_user_text(body["messages"])
        if collection and question:
            with timing.stage("retrieve"):
                found = await self._call(
                    "features",
                    "v1/search",
                    {"query": question, "k": self._settings.retrieval_k, "collection": collection, "mode": "hybrid"},
                )
            plan.citations = [
                {key: hit.get(key) for key in ("document_id", "title", "chunk_id", "score", "text")}
                for hit in found.get("results", [])
            ]
        if collection or prompt_ref:
            with timing.stage("prompt"):
                await self._render(plan, prompt_ref, question)
        return plan

    async def _render(self, plan: ChatPlan, prompt_ref: Any, question: str) -> None:
        context = (
            "\n\n".join(
                f"[{i + 1}] {c['title'] or c['document_id']}: {c['text']}" for i, c in enumerate(plan.citations)
            )
            or "(nothing found)"
        )
        reference = prompt_ref if isinstance(prompt_ref, dict) else {"name": prompt_ref or self._settings.rag_prompt}
        variables = {"question": question, "context": context, **(reference.get("variables") or {})}
        render = {"variables": variables, **{k: reference[k] for k in ("label", "version") if k in reference}}
        try:
            rendered = await self._call("prompts", f"v1/prompts/{reference['name']}/render", render)
        except Problem as problem:
            if problem.status != 404 or prompt_ref is not None:
                raise
            # No managed RAG prompt yet: ground the answer with the built-in one, and say so.
            system = {"role": "system", "content": BUILTIN_SYSTEM_PROMPT.format(context=context)}
            plan.request["messages"] = [system, *plan.request["messages"]]
            plan.prompt = {"name": "builtin", "version": None}
            return
        rendered_messages = rendered.get("messages") or [{"role": "user", "content": rendered.get("text", "")}]
        # The template speaks for the last user turn; earlier turns stay as the client sent them.
        history = (
            plan.request["messages"][:-1]
            if plan.request["messages"][-1].get("role") == "user"
            else plan.request["messages"]
        )
        plan.request["messages"] = [*history, *rendered_messages]
        for key, value in (rendered.get("config") or {}).items():
            if key in ("temperature", "top_p", "max_tokens", "stop"):
                plan.request.setdefault(key, value)
        plan.prompt = {"name": rendered.get("name"), "version": rendered.get("version")}

    # --- generation and output rails ----------------------------------------------------------

    async def complete(self, plan: ChatPlan, request_id: str) -> dict[str, Any]:
        with plan.timing.stage("inference"):
            answer = await self._call(
                "inference",
                "v1/chat/completions",
                {**plan.request, "stream": False},
                timeout=self._settings.generation_timeout,
            )
        for choice in answer.get("choices", []):
            message = choice.get("message") or {}
            with plan.timing.stage("guard-out"):
                checked = await self._call(
                    "guard",
                    "v1/guard/output",
                    {
                        "text": message.get("content") or "",
                        "request_id": request_id,
                        **_json_mode(plan.request),
                    },
                )
            if checked.get("allowed", True):
                message["content"] = checked.get("text", "")
            else:
                message["content"] = ""
                choice["finish_reason"] = "content_filter"
        answer["citations"] = _public_citations(plan.citations)
        answer["lineage"] = self._lineage(plan, answer.get("model"))
        return answer

    async def stream(self, plan: ChatPlan, request_id: str, *, report_timing: bool = True) -> AsyncIterator[bytes]:
        """Relay inference's SSE stream, releasing text only as guard clears it."""
        request = {**plan.request, "stream": True, "stream_options": {"include_usage": True}}
        pending, template, finish, usage, blocked = "", None, None, None, False
        timing = plan.timing
        # `inference` is the time the upstream stream was open, less the output checks made
        # while it was (reading pauses during each): the two add up to the stream's wall time.
        opened = time.perf_counter()
        async with self._sidecar.invoke_stream(
            "inference", "v1/chat/completions", json_body=request, timeout=self._settings.generation_timeout
        ) as upstream:
            if upstream.status_code != 200:
                raise await _upstream_problem(upstream, "inference")
            async for chunk in _sse_events(upstream):
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
                        step = await self._stream_step(plan, pending, request_id, final=False)
                        pending, blocked = step["pending"], step["blocked"]
                        if step["released"]:
                            timing.since_start("first-token")
                            yield _sse({**template, "choices": [_delta(step["released"])]})
            checked_s = timing.durations_ms.get("guard-out", 0.0) / 1000
            timing.add("inference", time.perf_counter() - opened - checked_s)
        if not blocked:
            step = await self._stream_step(plan, pending, request_id, final=True)
            blocked = step["blocked"]
            if step["released"] and not blocked:
                timing.since_start("first-token")
                yield _sse({**(template or {}), "choices": [_delta(step["released"])]})
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

    async def _stream_step(self, plan: ChatPlan, pending: str, request_id: str, *, final: bool) -> dict[str, Any]:
        with plan.timing.stage("guard-out"):
            return await self._call(
                "guard", "v1/guard/output/stream", {"pending": pending, "final": final, "request_id": request_id}
            )

    def _lineage(self, plan: ChatPlan, model: Any) -> dict[str, Any]:
        return {"model": model, "prompt": plan.prompt, "collection": plan.collection, "trace_id": current_trace_id()}

    async def _call(self, app_id: str, path: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        try:
            response = await self._sidecar.invoke(
                app_id, path, json_body=body, timeout=timeout or self._settings.timeout
            )
        except httpx.HTTPError as error:
            raise Problem(
                503, f"The {app_id} service cannot be reached right now.", headers={"Retry-After": "5"}
            ) from error
        if response.status_code >= 400:
            raise await _upstream_problem(response, app_id)
        return response.json()


async def _upstream_problem(response: httpx.Response, app_id: str) -> Problem:
    """A client error from an app is the client's to see; anything else is the platform's."""
    await response.aread()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if 400 <= response.status_code < 500 and "detail" in body:
        extensions = {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail", "instance")}
        return Problem(response.status_code, body["detail"], title=body.get("title"), **extensions)
    return Problem(503, f"The {app_id} service cannot answer right now.", headers={"Retry-After": "5"})


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
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


def may_end_sentence(pending: str, new_text: str) -> bool:
    """True when `new_text`, just added to `pending`, may have completed a sentence."""
    new_from = len(pending) - len(new_text)
    window = max(0, new_from - SENTENCE_END_REACH)
    # Only a sentence end that the new text completes counts: earlier ones were asked about.
    return any(match.end() > new_from for match in SENTENCE_END.finditer(pending, window))


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


def _public_citations(citations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: c[k] for k in ("document_id", "title", "chunk_id", "score")} for c in citations]
