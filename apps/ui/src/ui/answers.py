"""Chat answers generated on the server, independent of the page that asked.

The ui opens the gateway's stream itself and keeps the answer as it grows, so a page can
follow it, be reloaded and follow it again, or stop it. Stopping closes the stream to the
gateway, which closes its stream to inference, which cancels the generation (its metric
`inference_requests_finished_total{reason="cancelled"}` counts it). A finished answer is kept
in the state store (`answer:<id>`, with a TTL), so a reload after the end shows it whole from
any replica; an answer still running lives in the replica that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from genai_platform.dapr import Sidecar
from ui.platform_api import Gateway, PlatformError


@dataclass
class Answer:
    id: str
    owner: str  # the session id that asked: nobody else may read or stop it
    question: str
    model: str
    collection: str | None
    text: str = ""
    status: str = "running"  # running | done | stopped | failed
    error: str | None = None
    finish_reason: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    lineage: dict[str, Any] = field(default_factory=dict)
    server_timing: str | None = None
    # The guard's verdict when a rail refused the question or withheld the answer.
    guard: str | None = None
    created: float = field(default_factory=time.time)
    updates: int = 0  # text changes so far; a follower waits for the next one

    @property
    def running(self) -> bool:
        return self.status == "running"

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("owner", "updates")}


def _parse_sse(buffer: str) -> tuple[list[str], str]:
    """Complete `data:` payloads in `buffer` and the unfinished rest (events end with a blank line)."""
    events, _, rest = buffer.rpartition("\n\n")
    payloads = []
    for event in events.split("\n\n") if events else []:
        data = [line[5:].lstrip() for line in event.splitlines() if line.startswith("data:")]
        if data:
            payloads.append("\n".join(data))
    return payloads, rest


class AnswerRunner:
    def __init__(self, sidecar: Sidecar, gateway: Gateway, *, ttl_seconds: int, timeout: float) -> None:
        self._sidecar = sidecar
        self._gateway = gateway
        self._ttl = ttl_seconds
        self._timeout = timeout
        self._live: dict[str, Answer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def start(self, owner: str, api_key: str, request: dict[str, Any], question: str, collection: str | None) -> Answer:
        answer = Answer(secrets.token_urlsafe(12), owner, question, str(request.get("model") or ""), collection)
        self._live[answer.id] = answer
        self._changed[answer.id] = asyncio.Event()
        self._tasks[answer.id] = asyncio.create_task(self._run(answer, api_key, request))
        return answer

    async def get(self, answer_id: str, owner: str) -> Answer | None:
        answer = self._live.get(answer_id)
        if answer is None:
            item = await self._sidecar.get_state(f"answer:{answer_id}")
            if item is None or not isinstance(item.value, dict):
                return None
            answer = Answer(**item.value)
        return answer if answer.owner == owner else None

    async def stop(self, answer_id: str, owner: str) -> bool:
        answer = self._live.get(answer_id)
        task = self._tasks.get(answer_id)
        if answer is None or answer.owner != owner or task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def follow(self, answer_id: str, owner: str) -> AsyncIterator[Answer]:
        """The answer now, then again after each change, until it ends."""
        answer = await self.get(answer_id, owner)
        if answer is None:
            return
        while True:
            changed = self._changed.get(answer_id)
            yield answer
            if not answer.running or changed is None:
                return
            await changed.wait()

    def _notify(self, answer: Answer) -> None:
        answer.updates += 1
        event = self._changed.get(answer.id)
        if event is not None:
            event.set()
            self._changed[answer.id] = asyncio.Event()

    async def _run(self, answer: Answer, api_key: str, request: dict[str, Any]) -> None:
        try:
            async with self._gateway.stream(
                "v1/chat/completions", api_key, {**request, "stream": True}, timeout=self._timeout
            ) as response:
                buffer = ""
                async for chunk in response.aiter_text():
                    payloads, buffer = _parse_sse(buffer + chunk.replace("\r\n", "\n"))
                    for payload in payloads:
                        if payload == "[DONE]":
                            continue
                        self._take(answer, json.loads(payload))
            answer.status = "failed" if answer.error else "done"
        except asyncio.CancelledError:
            answer.status = "stopped"
        except PlatformError as error:
            answer.status, answer.error = "failed", error.message
            if error.status == 400 and "rail" in error.message:
                answer.guard = error.message
        except (ValueError, OSError) as error:
            answer.status, answer.error = "failed", f"The answer could not be read: {type(error).__name__}."
        finally:
            await self._finish(answer)

    def _take(self, answer: Answer, event: dict[str, Any]) -> None:
        if "error" in event:  # the gateway's last event when the pipeline failed after the headers
            problem = event["error"] or {}
            # OpenAI's error event (gateway.output_stream.error_event) says why in `message`.
            answer.error = str(problem.get("message") or problem.get("detail") or "The answer failed.")
            if "rail" in answer.error:
                answer.guard = answer.error
            return
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or ""
            if text:
                answer.text += text
                self._notify(answer)
            if choice.get("finish_reason"):
                answer.finish_reason = choice["finish_reason"]
                if answer.finish_reason == "content_filter":
                    answer.guard = "The output rail withheld the rest of the answer (content_filter)."
        answer.citations = event.get("citations") or answer.citations
        answer.lineage = event.get("lineage") or answer.lineage
        answer.server_timing = event.get("server_timing") or answer.server_timing

    async def _finish(self, answer: Answer) -> None:
        with contextlib.suppress(Exception):  # a store outage must not hide the answer from its page
            await self._sidecar.save_states(
                [(f"answer:{answer.id}", asdict(answer))], metadata={"ttlInSeconds": str(self._ttl)}
            )
        self._notify(answer)
        self._tasks.pop(answer.id, None)
        self._changed.pop(answer.id, None)
        # Kept in memory a little longer, so a page that follows it right now finds it even if the store is slow.
        asyncio.get_running_loop().call_later(60, self._live.pop, answer.id, None)
