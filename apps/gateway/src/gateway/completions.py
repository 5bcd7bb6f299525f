"""The text completion pipeline behind the gateway's /v1/completions: the chat pipeline's input and
output policy for OpenAI's legacy endpoint.

input rails (guard, on the prompt) → generation (inference's /v1/completions) → output rails
(guard, on each choice's text; a stream through the chat pipeline's own stream checks). There is
no retrieval or prompt render: a completion continues the client's text as it is. Without this,
the prompt a chat request is refused for would reach the model through this side entrance.

The answers are OpenAI's `text_completion` objects, whole or streamed; a refused choice is emptied
with `finish_reason: content_filter`, as in chat.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gateway.chat import ChatPipeline, ChatPlan, refused
from gateway.stages import COMPLETIONS, DETOKENIZE, InferenceClient
from gateway.timing import ServerTiming
from gateway.validation import validated_body
from genai_platform.contracts.openai import CompletionRequest


class CompletionPipeline:
    """The stages of a text completion request, sharing the chat pipeline's clients and settings.

    Raises `Problem`: 422 for a body that is not a valid completion request, 400 for a field the
    platform does not serve or a prompt the input rails refuse (`blocked_by` names the rails),
    503 when a stage cannot answer.
    """

    def __init__(self, chat: ChatPipeline) -> None:
        self.chat = chat
        # The chat stream's output checks, reading inference's text completion chunks as chat
        # chunks: one implementation of streamed output rails for every route (see TextAsChat).
        self._streamer = copy.copy(chat)
        self._streamer.inference = TextAsChat(chat.inference)

    async def plan(self, body: dict[str, Any], request_id: str, timing: ServerTiming | None = None) -> ChatPlan:
        """Validate the request and run the input rails on its prompt: the request inference gets.

        A prompt of token ids is decoded by inference (`v1/detokenize`, the served model's
        tokenizer: the gateway holds none) and its text checked like any prompt: the ids go on as
        given when the rails pass the text unchanged, and the text as the rails let it through
        (redacted) when they change it. An id outside the vocabulary is inference's 400 naming it.
        """
        timing = timing or ServerTiming()
        body = validated_body(CompletionRequest, body, max_tokens=self.chat.settings.max_tokens)
        request = CompletionRequest.model_validate(body)
        text = request.prompt_text()
        with timing.stage("guard-in"):
            if text is None:
                asked = {name: body[name] for name in ("model", "prompt") if name in body}
                text = str((await self.chat.inference.post(DETOKENIZE, asked))["text"])
            verdict = await self.chat.guard.check_text(text, request_id)
        if not verdict.allowed:
            raise refused(verdict.blocked_by, verdict.rails, param="prompt")
        if verdict.text == text and request.prompt_text() is None:
            return ChatPlan(request=body, collection=None, timing=timing)
        # The prompt as the rails let it through (a secret pasted in it is redacted).
        return ChatPlan(request={**body, "prompt": verdict.text}, collection=None, timing=timing)

    async def complete(self, plan: ChatPlan, request_id: str) -> dict[str, Any]:
        """Generate the whole completion, then check each choice's text with the output rails."""
        with plan.timing.stage("inference"):
            answer = await self.chat.inference.complete(
                plan.request, timeout=self.chat.settings.generation_timeout, path=COMPLETIONS
            )
        for choice in answer.get("choices", []):
            with plan.timing.stage("guard-out"):
                verdict = await self.chat.guard.check_output(choice.get("text") or "", request_id)
            if verdict.allowed:
                choice["text"] = verdict.text
            else:
                choice["text"] = ""
                choice["finish_reason"] = "content_filter"
        return answer

    async def stream(self, plan: ChatPlan, request_id: str, *, report_timing: bool = True) -> AsyncIterator[bytes]:
        """The chat pipeline's checked stream (`ChatPipeline.stream`), as `text_completion` events."""
        async with contextlib.aclosing(self._streamer.stream(plan, request_id, report_timing=report_timing)) as events:
            async for event in events:
                converted = as_text_completion_event(event)
                if converted is not None:
                    yield converted


class TextAsChat(InferenceClient):
    """Inference's text completion stream, read as a chat stream: each `text_completion` chunk's
    `choices[].text` becomes `choices[].delta.content`, everything else stays."""

    def __init__(self, inference: InferenceClient) -> None:
        super().__init__(inference.sidecar, inference.app_id, inference.timeout)

    @asynccontextmanager
    async def stream(
        self, request: dict[str, Any], *, timeout: float, path: str = COMPLETIONS
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        async with super().stream(request, timeout=timeout, path=COMPLETIONS) as chunks:
            yield _as_chat_chunks(chunks)


async def _as_chat_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for chunk in chunks:
        choices = [
            {**{k: v for k, v in choice.items() if k != "text"}, "delta": {"content": choice.get("text") or ""}}
            for choice in chunk.get("choices") or []
        ]
        yield {**chunk, "object": "chat.completion.chunk", "choices": choices}


def as_text_completion_event(event: bytes) -> bytes | None:
    """One server-sent event of the chat stream as OpenAI's `text_completion` chunk (`delta.content`
    -> `text`; chat's `citations`, `lineage` and a role-only delta dropped); `[DONE]` and error
    events pass unchanged. None for an event with nothing left to say."""
    payload = event.decode().removeprefix("data:").strip()
    if payload == "[DONE]":
        return event
    data = json.loads(payload)
    if "choices" not in data:
        return event  # an error event
    choices = []
    for choice in data["choices"]:
        delta = choice.get("delta") or {}
        text = delta.get("content") or ""
        if text or choice.get("finish_reason") is not None:
            rest = {k: v for k, v in choice.items() if k != "delta"}
            choices.append({**rest, "text": text, "logprobs": None})
    if not choices and data.get("choices") and not data.get("usage"):
        return None
    data = {k: v for k, v in data.items() if k not in ("citations", "lineage")}
    data.update(object="text_completion", choices=choices)
    return f"data: {json.dumps(data)}\n\n".encode()
