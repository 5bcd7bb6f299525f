"""The gateway's guarded stream through real sidecars, the real guard and the real model: OpenAI's
stream format (role first, text as the guard clears it, usage in its own chunk); inference's 4xx,
or its absence, answered as a problem before any stream starts; and an error event, not a quiet
end, when inference dies mid-answer."""

from __future__ import annotations

import json

import httpx
import pytest

from harness import bearer, metric, wait_until

STORY = [{"role": "user", "content": "Tell me a long story about a cat."}]


def test_a_stream_is_openai_shaped_and_ends_with_an_error_when_inference_dies(generation_stack, secrets) -> None:
    inference, gateway = generation_stack["inference"], generation_stack["gateway"]
    body = {
        "model": "smollm2",
        "messages": STORY,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url = f"{gateway.app.url}/v1/chat/completions"

    # Whole and well: role, several checked pieces, the finish, then usage alone, then [DONE].
    with httpx.stream("POST", url, json={**body, "max_tokens": 24}, headers=bearer(secrets), timeout=120) as answer:
        assert answer.status_code == 200
        events = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in texts if t]) > 5  # word by word, not a sentence at a time
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 24

    # A client that leaves after the first words is charged what inference generated until then
    # (it reports usage on every chunk): stopping just before the end is not a free answer.
    def tokens_used() -> int:
        answer = httpx.get(f"{gateway.app.url}/v1/usage", headers=bearer(secrets), timeout=30)
        return answer.json()["tokens_used"]

    before = tokens_used()
    with httpx.stream("POST", url, json={**body, "max_tokens": 200}, headers=bearer(secrets), timeout=120) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                break  # leave mid-answer
    wait_until(lambda: tokens_used() > before, what="the cut-off stream's tokens charged", timeout=30)
    assert tokens_used() - before < 200 + 100  # what was generated before it was cancelled, not max_tokens

    # A client that drops a whole (non-streamed) answer cancels its generation, as a stream's does.
    cancelled = metric(inference, "inference_requests_finished_total", reason="cancelled")
    # stream_options goes with the stream: without one it is a 400, as OpenAI answers.
    unstreamed = {key: value for key, value in body.items() if key != "stream_options"} | {"stream": False}
    long = {**unstreamed, "max_tokens": 1500, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json=long, headers=bearer(secrets), timeout=httpx.Timeout(30, read=1.0))
    wait_until(
        lambda: metric(inference, "inference_requests_finished_total", reason="cancelled") > cancelled,
        what="the dropped whole answer's generation cancelled",
        timeout=30,
    )

    # Input over the guard's length limit: a 400 naming the rail and the limit, as every limit is named.
    long_question = [{"role": "user", "content": "word " * 9000}]
    too_long = httpx.post(url, json={**body, "messages": long_question}, headers=bearer(secrets), timeout=120)
    assert too_long.status_code == 400 and too_long.json()["blocked_by"] == ["length"], too_long.text
    assert (too_long.json()["limit"], too_long.json()["limit_value"]) == ("length.max_tokens", 8192)
    assert "limit 8192" in too_long.json()["detail"]
    # OpenAI's code for it, as inference answers a prompt past the model's context (a new-user
    # trial: clients that shorten their history on that code saw content_filter here).
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert too_long.json()["error"]["param"] == "messages"

    # A parameter only inference checks: the streamed request is inference's 400, as the whole one
    # is, not a 200 stream whose one event is the error (the OpenAI SDK could not tell it was a 400).
    past_vocabulary = {**body, "max_tokens": 5, "logit_bias": {"999999999": 100}}
    unstreamed_past = {**past_vocabulary, "stream": False, "stream_options": None}
    whole = httpx.post(url, json=unstreamed_past, headers=bearer(secrets), timeout=120)
    streamed = httpx.post(url, json=past_vocabulary, headers=bearer(secrets), timeout=120)
    assert whole.status_code == streamed.status_code == 400, streamed.text
    assert streamed.headers["content-type"].startswith("application/problem+json")
    assert streamed.json()["detail"] == whole.json()["detail"] and "logit_bias" in streamed.json()["detail"]

    # Inference killed after the first text: the stream ends with an error event.
    seen = []
    with httpx.stream("POST", url, json={**body, "max_tokens": 200}, headers=bearer(secrets), timeout=120) as answer:
        lines = answer.iter_lines()
        for line in lines:
            seen.append(line)
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                break
        inference.app.process.kill()
        rest = [line[6:] for line in lines if line.startswith("data: ")]
    assert rest, f"the stream ended before the kill: {seen}"
    last = json.loads(rest[-1])
    assert last["error"]["type"] == "server_error" and last["error"]["status"] == 502, last
    assert "[DONE]" not in rest

    # Inference gone before a stream starts: a 503 with Retry-After, as without `stream`.
    refused = httpx.post(url, json={**body, "max_tokens": 5}, headers=bearer(secrets), timeout=120)
    assert refused.status_code == 503 and refused.headers.get("Retry-After"), refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
