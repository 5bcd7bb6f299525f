"""A client that leaves the gateway's stream mid-answer ends the generation in inference: for chat
and for text completions, through real sidecars, the real guard and the real model. Inference
counts it in `inference_requests_finished_total{reason="cancelled"}` and frees the batch slot."""

from __future__ import annotations

import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness import AppWithSidecar, bearer, wait_until

STORY = "Tell me a long story about a lighthouse keeper, hour by hour."


def cancelled(inference: AppWithSidecar) -> float:
    text = httpx.get(f"{inference.app.url}/metrics", timeout=5.0).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "inference_requests_finished_total" and sample.labels.get("reason") == "cancelled"
    )


def active(inference: AppWithSidecar) -> int:
    headers = {"dapr-api-token": inference.sidecar.app_api_token or ""}
    return httpx.get(f"{inference.app.url}/admin/engines", headers=headers, timeout=5.0).json()["current"]["active"]


def test_leaving_a_stream_cancels_its_generation(generation_stack, secrets) -> None:
    inference, gateway = generation_stack["inference"], generation_stack["gateway"]
    # ignore_eos: the generation cannot end by itself before the client leaves.
    long = {"model": "smollm2", "temperature": 0, "max_tokens": 2000, "ignore_eos": True, "stream": True}
    routes = {
        "chat": ("/v1/chat/completions", {**long, "messages": [{"role": "user", "content": STORY}]}),
        "completions": ("/v1/completions", {**long, "prompt": STORY}),
    }
    for name, (path, body) in routes.items():
        before = cancelled(inference)
        with httpx.stream(
            "POST", f"{gateway.app.url}{path}", json=body, headers=bearer(secrets), timeout=120
        ) as answer:
            assert answer.status_code == 200, name
            seen = []
            for line in answer.iter_lines():
                seen.append(line)
                if released_text(line):
                    break  # leave after the first checked text: the connection closes
            else:
                raise AssertionError(f"the {name} stream ended before any text: {seen}")
        wait_until(
            lambda before=before: cancelled(inference) > before,
            what=f"inference to cancel the {name} generation the client left",
            timeout=30,
            watch=inference.processes,
        )
        wait_until(lambda: active(inference) == 0, what="the batch slot to be freed", timeout=10)


def released_text(line: str) -> str:
    """The text of a chat or text completion chunk's `data:` line ("" for any other line)."""
    if not line.startswith("data: {"):
        return ""
    choices = json.loads(line[len("data: ") :]).get("choices") or [{}]
    return choices[0].get("text") or (choices[0].get("delta") or {}).get("content") or ""
