"""The gateway's streamed answer, against the one fake sidecar (tests/fakes.py) with the REAL guard's
stream step behind it: OpenAI's stream format (role first, usage in its own chunk when asked, an
error event when the model fails mid-answer), text released as the guard clears it, and at most
one guard call per released piece."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_guard_streaming import answers

from fakes import FakeDapr
from gateway.chat import ChatPipeline, ChatPlan, PipelineSettings
from gateway.output_stream import error_event, guarded_stream
from genai_platform.contracts.guard import GuardStreamStep
from genai_platform.errors import Problem
from genai_platform.streaming import ClosingStreamingResponse
from guard.streaming import step_with_lookahead
from stream_guard import GUARD, guard_stream_steps

SETTINGS = PipelineSettings(rag_prompt="rag-answer", retrieval_k=2, timeout=5.0, generation_timeout=30.0)
QUESTION = "How do I reach support?"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "smollm2",
        "system_fingerprint": "v3",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def sse(tokens: list[str], *, tail: list[dict[str, Any]] | None = None, done: bool = True) -> bytes:
    """Inference's stream: the role, each token, then `tail` (default: the finish and usage chunks)."""
    chunks = [chunk({"role": "assistant", "content": ""}), *(chunk({"content": t}) for t in tokens)]
    if tail is None:
        usage = {"prompt_tokens": 5, "completion_tokens": len(tokens), "total_tokens": 5 + len(tokens)}
        tail = [chunk({}, "stop"), {**chunk({}), "choices": [], "usage": usage}]
    chunks += tail
    return ("".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ("data: [DONE]\n\n" if done else "")).encode()


class Trickle(httpx.AsyncByteStream):
    """A response body sent one event at a time, `gap` seconds apart (a model writing tokens)."""

    def __init__(self, payload: bytes, gap: float = 0.01) -> None:
        self.events = [event + b"\n\n" for event in payload.split(b"\n\n") if event]
        self.gap = gap

    async def __aiter__(self):
        for event in self.events:
            await asyncio.sleep(self.gap)
            yield event


def streamed(payload: bytes, gap: float = 0.01) -> httpx.Response:
    return httpx.Response(200, stream=Trickle(payload, gap), headers={"content-type": "text/event-stream"})


class BrokenStream(httpx.AsyncByteStream):
    """A response body that breaks off after `payload` (the connection to inference dropped)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    async def __aiter__(self):
        yield self.payload
        raise httpx.ReadError("peer closed connection without sending complete message body")


def platform(inference: Any, guard_step: Any = guard_stream_steps) -> FakeDapr:
    dapr = FakeDapr(app_id="gateway")
    messages = [{"role": "user", "content": QUESTION}]
    dapr.answer("guard", "v1/guard/input", {"allowed": True, "messages": messages, "checked": []})
    dapr.answer("guard", "v1/guard/output/stream/batch", guard_step)
    dapr.answer("inference", "v1/chat/completions", inference)
    return dapr


def run(dapr: FakeDapr, **request: Any) -> tuple[ChatPlan, list[Any], Problem | None]:
    """The stream's events (parsed), and the problem it raised after them, if any."""

    async def scenario() -> tuple[ChatPlan, list[Any], Problem | None]:
        pipeline = ChatPipeline(dapr.sidecar(), SETTINGS)
        plan = await pipeline.plan({"messages": [{"role": "user", "content": QUESTION}], **request}, "req-1")
        events: list[Any] = []
        try:
            async for raw in pipeline.stream(plan, "req-1"):
                payload = raw.decode().removeprefix("data: ").strip()
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        except Problem as problem:
            return plan, events, problem
        return plan, events, None

    return asyncio.run(scenario())


def texts(events: list[Any]) -> list[str]:
    return [
        e["choices"][0]["delta"]["content"]
        for e in events
        if isinstance(e, dict) and e.get("choices") and e["choices"][0].get("delta", {}).get("content")
    ]


def guard_calls(dapr: FakeDapr) -> list[list[dict[str, Any]]]:
    """Each guard call's steps."""
    return [call.body["steps"] for call in dapr.invocations if call.method == "v1/guard/output/stream/batch"]


TOKENS = [
    "Write",
    " to",
    " jane",
    ".d",
    "oe",
    "@exa",
    "mple",
    ".com",
    " or",
    " call",
    " 555",
    " 123",
    "\n",
    "4567",
    ".",
]


def test_the_stream_is_openai_shaped_and_released_as_the_guard_clears_it() -> None:
    dapr = platform(streamed(sse(TOKENS)))
    plan, events, problem = run(dapr)

    assert problem is None
    # Role first, with no text; then the checked pieces; the finish chunk; no usage (not asked); [DONE].
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    whole = GUARD.check_output("".join(TOKENS), streaming=True).text
    assert "".join(texts(events)) == whole == "Write to [REDACTED:EMAIL] or call [REDACTED:PHONE]."
    assert len(texts(events)) >= 4  # word by word, not one event at the end of the sentence
    assert not any("jane" in t or "4567" in t for t in texts(events))
    finish = events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop" and "citations" in finish and "usage" not in finish
    assert events[-1] == "[DONE]"
    assert plan.usage == {"prompt_tokens": 5, "completion_tokens": len(TOKENS), "total_tokens": 5 + len(TOKENS)}
    # At most one guard call per token (and one final step), each with this stream's one step.
    calls = guard_calls(dapr)
    assert len(calls) <= len(TOKENS) + 1 and all(len(steps) == 1 for steps in calls)


def test_usage_comes_in_its_own_last_chunk_with_empty_choices_when_asked() -> None:
    dapr = platform(httpx.Response(200, content=sse(["Hi", "."]), headers={"content-type": "text/event-stream"}))
    _, events, _ = run(dapr, stream_options={"include_usage": True})
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 7
    assert events[-3]["choices"][0]["finish_reason"] == "stop" and events[-1] == "[DONE]"
    # OpenAI: "All other chunks will also include a usage field, but with a null value" (a trial
    # found it missing); each chunk has the model's system_fingerprint and a null logprobs.
    others = events[:-2]
    assert len(others) >= 3 and all(e["usage"] is None and e["system_fingerprint"] == "v3" for e in others)
    assert all(e["choices"][0]["logprobs"] is None for e in others)


def test_without_include_usage_no_chunk_has_a_usage_field() -> None:
    dapr = platform(httpx.Response(200, content=sse(["Hi", "."]), headers={"content-type": "text/event-stream"}))
    _, events, _ = run(dapr)
    assert all("usage" not in e for e in events[:-1]) and events[-1] == "[DONE]"


def test_a_blocked_piece_ends_the_text_with_content_filter() -> None:
    tokens = ["Fine", ".", " Now", " forbidden", " words", ".", " More", " text", "."]
    dapr = platform(streamed(sse(tokens)))
    _, events, _ = run(dapr)
    assert "".join(texts(events)) == "Fine. Now "
    assert events[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert not any("forbidden" in t or "More" in t for t in texts(events))


@pytest.mark.parametrize(
    "body",
    [
        # inference's own error event (a generation that failed)
        sse(["It", " is"], tail=[{"error": {"message": "The generation failed.", "type": "server_error"}}]),
        # the stream ends with no finish reason and no [DONE] (the process was killed)
        sse(["It", " is"], tail=[], done=False),
    ],
    ids=["error-event", "cut-short"],
)
def test_a_model_failing_mid_answer_ends_with_an_error_not_a_quiet_end(body: bytes) -> None:
    dapr = platform(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    _, events, problem = run(dapr)
    assert problem is not None and problem.status == 502
    assert "[DONE]" not in events and not any(e["choices"] and e["choices"][0].get("finish_reason") for e in events)
    event = json.loads(error_event(problem).decode().removeprefix("data: "))
    assert event["error"]["type"] == "server_error" and event["error"]["status"] == 502
    assert event["error"]["message"].startswith("The answer broke off")


def test_a_broken_connection_mid_answer_is_an_error() -> None:
    broken = httpx.Response(200, stream=BrokenStream(sse(["It", " is", " so"], tail=[], done=False)))
    _, events, problem = run(platform(broken))
    assert problem is not None and problem.status == 502 and "connection" in problem.detail
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


class AfterFirstCheck(httpx.AsyncByteStream):
    """The role and one token, then (once the guard is checking it) every other token at once."""

    def __init__(self, payload: bytes, checking: asyncio.Event) -> None:
        self.events = [event + b"\n\n" for event in payload.split(b"\n\n") if event]
        self.checking = checking

    async def __aiter__(self):
        yield b"".join(self.events[:2])
        await self.checking.wait()
        yield b"".join(self.events[2:])


def test_text_arriving_while_a_check_runs_goes_with_the_next_check() -> None:
    checking = asyncio.Event()

    async def slow_guard(request: httpx.Request) -> dict[str, Any]:
        checking.set()
        await asyncio.sleep(0.05)
        return guard_stream_steps(request)

    tokens = [f" word{i}" for i in range(30)]
    upstream = httpx.Response(200, stream=AfterFirstCheck(sse(tokens), checking))
    dapr = platform(upstream, slow_guard)
    _, events, _ = run(dapr)
    assert "".join(texts(events)) == "".join(tokens)
    calls = [step for steps in guard_calls(dapr) for step in steps]
    # The first token alone, then the 29 that arrived while it was checked, in one call (final).
    assert [c["chunk"] for c in calls] == [" word0", "".join(tokens[1:])]
    assert calls[-1]["final"] and not calls[0]["final"]


# --- a client that leaves mid-answer ------------------------------------------------------------


class ReleasingGuard:
    """A guard that releases everything it is sent (the rails are not what these tests are about)."""

    async def stream_step(self, pending: str, request_id: str, **step: Any) -> GuardStreamStep:
        await asyncio.sleep(0)
        return GuardStreamStep(released=pending + step["chunk"], pending="")


def test_a_cancelled_stream_lets_its_reader_finish_closing_the_upstream_first() -> None:
    """Starlette ends a stream whose client left by cancelling an anyio cancel scope, which
    cancels every await of the task again; the model's stream must still be closed whole."""
    closed: list[str] = []

    async def model_text():
        try:
            while True:
                await asyncio.sleep(0.001)
                yield "word "
        finally:
            await asyncio.sleep(0.01)  # closing a connection takes awaits of its own
            closed.append("closed")

    async def scenario() -> None:
        steps = guarded_stream(model_text(), ReleasingGuard(), "req-1")  # type: ignore[arg-type]
        with anyio.CancelScope() as client_left:
            async with contextlib.aclosing(steps):
                await anext(steps)
                client_left.cancel()
                await anext(steps)
        assert client_left.cancelled_caught
        assert closed == ["closed"]  # before guarded_stream returned, not later

    asyncio.run(scenario())


def test_a_streamed_body_is_closed_when_the_client_leaves_while_a_send_waits() -> None:
    """The cancellation lands in `send` (a slow client), not in the body: it is closed all the same."""
    closed: list[str] = []

    async def body():
        try:
            while True:
                yield b"data: {}\n\n"
        finally:
            closed.append("closed")

    async def scenario() -> None:
        first_sent = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await first_sent.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                first_sent.set()
                await asyncio.Event().wait()  # the client reads no more

        scope = {"type": "http", "asgi": {"spec_version": "2.3"}, "method": "POST", "path": "/"}
        await ClosingStreamingResponse(body(), media_type="text/event-stream")(scope, receive, send)
        assert closed == ["closed"]

    asyncio.run(scenario())


def test_streams_relayed_at_once_each_get_their_own_checked_text() -> None:
    answers = [TOKENS, ["Call", " me", " at", " bob", "@example", ".org", " today", "."]]
    served: list[int] = []

    def inference(request: httpx.Request) -> httpx.Response:
        served.append(len(served))
        return streamed(sse(answers[served[-1]]), gap=0.005)

    dapr = platform(inference)

    async def scenario() -> list[list[str]]:
        pipeline = ChatPipeline(dapr.sidecar(), SETTINGS)

        async def one() -> list[str]:
            plan = await pipeline.plan({"messages": [{"role": "user", "content": QUESTION}]}, "req-1")
            events = [raw.decode().removeprefix("data: ").strip() async for raw in pipeline.stream(plan, "req-1")]
            return texts([json.loads(e) for e in events if e != "[DONE]"])

        return list(await asyncio.gather(one(), one()))

    released = asyncio.run(scenario())
    for tokens, pieces in zip(answers, released, strict=True):
        assert "".join(pieces) == GUARD.check_output("".join(tokens), streaming=True).text


def test_steps_of_several_streams_asked_at_once_go_in_one_guard_call() -> None:
    dapr = platform(streamed(sse(["unused"])))

    async def scenario() -> list[GuardStreamStep]:
        guard = ChatPipeline(dapr.sidecar(), SETTINGS).guard
        asks = [("", "Mail jane@exa"), ("", "The"), ("jane@exa", "mple.com. Bye")]
        return list(await asyncio.gather(*(guard.stream_step(p, "req-1", chunk=c, final=False) for p, c in asks)))

    steps = asyncio.run(scenario())
    assert [(s.released, s.pending) for s in steps] == [
        ("Mail ", "jane@exa"),
        ("", "The"),
        ("[REDACTED:EMAIL]. ", "Bye"),
    ]
    assert [len(call) for call in guard_calls(dapr)] == [3]  # one call, each stream's step in order


# --- text that begins with a space leaves on the guard's last answer ---------------------------


class InProcessGuard:
    """The guard's batch step (guard.streaming.step_with_lookahead with the shipped policy) as
    `GuardClient.stream_step` answers it; every call noted, each one held until `gate` opens."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.asked = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def stream_step(self, pending: str, request_id: str, *, final: bool, chunk: str = "") -> GuardStreamStep:
        self.calls.append(chunk)
        self.asked.set()
        await self.gate.wait()
        step, ahead = step_with_lookahead(GUARD, pending, chunk, final)
        return GuardStreamStep.model_validate(step.to_json(ahead))


def test_a_word_leaves_when_the_next_token_brings_its_space_without_a_guard_round_trip() -> None:
    async def scenario() -> None:
        guard = InProcessGuard()
        second = asyncio.Event()

        async def model_text():
            yield "Hello"
            await second.wait()
            yield " world"
            yield "."

        steps = guarded_stream(model_text(), guard, "req-1")  # type: ignore[arg-type]
        async with contextlib.aclosing(steps):
            pending_first = asyncio.ensure_future(anext(steps))
            await guard.asked.wait()  # "Hello" is being checked (it may still grow: nothing leaves)
            guard.gate.clear()  # every later guard call hangs until the gate opens
            second.set()
            step = await asyncio.wait_for(pending_first, timeout=5)
            # Released on the first call's answer (its after_space), the second still unanswered.
            assert step.released == "Hello " and not guard.gate.is_set()
            guard.gate.set()
            assert "".join([step.released] + [s.released async for s in steps]) == "Hello world."

    asyncio.run(scenario())


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=answers)
def test_any_chunking_relayed_by_the_gateway_streams_exactly_the_whole_check(data, text: str) -> None:
    """The guard's property (tests/unit/test_guard_streaming.py) through the gateway's relay, with
    its after_space shortcut: the pieces joined are the whole answer's checked text."""
    if len(text) < 2:
        return
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(text) - 1), max_size=len(text) // 3))))
    bounds = [0, *cuts, len(text)]
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    async def scenario() -> str:
        async def model_text():
            for chunk in chunks:
                yield chunk
                await asyncio.sleep(0)  # the model's tokens arrive one by one

        steps = guarded_stream(model_text(), InProcessGuard(), "req-1")  # type: ignore[arg-type]
        async with contextlib.aclosing(steps):
            return "".join([step.released async for step in steps])

    assert asyncio.run(scenario()) == GUARD.check_output(text, streaming=True).text
