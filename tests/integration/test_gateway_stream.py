"""The gateway's guarded stream through real sidecars, the real guard and the real model: OpenAI's
stream format (role first, text as the guard clears it, usage in its own chunk), and an error
event, not a quiet end, when inference dies mid-answer."""

from __future__ import annotations

import json

import httpx

from harness import bearer, wait_until

STORY = [{"role": "user", "content": "Tell me a long story about a cat."}]


def test_a_stream_is_openai_shaped_and_ends_with_an_error_when_inference_dies(
    start_app, default_broker, secrets
) -> None:
    guard = start_app("guard", default_broker)
    inference = start_app("inference")
    gateway = start_app("gateway")
    for app in (guard, inference, gateway):
        app.wait_ready()
    # Ready can come a moment before the first model version is promoted to serve, and before
    # the gateway's sidecar reaches inference's: poll the path the stream takes.
    through_dapr = f"{gateway.sidecar.url}/v1.0/invoke/inference/method/v1/chat/completions"
    ask = {"messages": STORY, "max_tokens": 1}
    token = {"dapr-api-token": secrets["dapr-api-token"]}
    wait_until(
        lambda: httpx.post(through_dapr, json=ask, headers=token, timeout=30).is_success,
        what="inference to answer through the gateway's sidecar",
        timeout=120,
    )
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
