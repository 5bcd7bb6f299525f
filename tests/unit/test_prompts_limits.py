"""A version's `max_tokens` over the platform's one limit on an answer's tokens is refused when the
version is created (a new-user trial stored 1,000,000): a 422 problem+json naming the field and
the limit. The routes run in process, in the prompts app, over the fake sidecar."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS


def prompt(max_tokens: Any, name: str = "answer") -> dict[str, Any]:
    return {
        "name": name,
        "type": "text",
        "template": "Answer: {{ question }}",
        "variables": {"type": "object", "properties": {"question": {"type": "string"}}},
        "config": {"temperature": 0.2, "max_tokens": max_tokens},
    }


def assert_over_limit(answer: Any, requested: int) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["errors"] == [
        {"location": "body.config.max_tokens", "message": f"max_tokens is {requested}, over the limit of 2048."}
    ]
    assert (body["limit"], body["limit_value"]) == ("max_tokens", MAX_COMPLETION_TOKENS) == ("max_tokens", 2048)
    assert body["title"] == "Invalid request" and body["detail"] == body["errors"][0]["message"]


def test_a_new_prompt_over_the_limit_is_refused_and_not_stored(prompts_client: TestClient) -> None:
    assert_over_limit(prompts_client.post("/v1/prompts", json=prompt(1_000_000)), 1_000_000)  # the trial's value
    assert_over_limit(prompts_client.post("/v1/prompts", json=prompt(MAX_COMPLETION_TOKENS + 1)), 2049)
    assert prompts_client.get("/v1/prompts/answer").status_code == 404


def test_a_new_version_over_the_limit_is_refused(prompts_client: TestClient) -> None:
    assert prompts_client.post("/v1/prompts", json=prompt(256)).status_code == 201
    draft = {key: value for key, value in prompt(4096).items() if key != "name"}
    assert_over_limit(prompts_client.post("/v1/prompts/answer/versions", json=draft), 4096)
    assert [v["version"] for v in prompts_client.get("/v1/prompts/answer/versions").json()] == [1]


def test_the_limit_itself_is_taken(prompts_client: TestClient) -> None:
    created = prompts_client.post("/v1/prompts", json=prompt(MAX_COMPLETION_TOKENS))
    assert created.status_code == 201, created.text
    assert created.json()["version"]["config"]["max_tokens"] == 2048
    rendered = prompts_client.post("/v1/prompts/answer/render", json={"version": 1, "variables": {"question": "Why?"}})
    assert rendered.json()["config"] == {"temperature": 0.2, "max_tokens": 2048}


@pytest.mark.parametrize("config", [{"max_tokens": "100"}, {"temperature": "0.5"}, {"max_tokens": 100.0}])
def test_a_setting_of_another_type_is_refused_not_converted(prompts_client: TestClient, config: dict[str, Any]) -> None:
    """A new-user trial: `"max_tokens": "100"` was stored as 100; the README says a wrong type is a 422."""
    body = {**prompt(None), "config": config}
    answer = prompts_client.post("/v1/prompts", json=body)
    assert answer.status_code == 422, answer.text
    assert [e["location"] for e in answer.json()["errors"]] == [f"body.config.{next(iter(config))}"]
    assert prompts_client.get("/v1/prompts/answer").status_code == 404  # nothing stored
