"""Schemathesis over the gateway's merged OpenAPI document, against the whole platform (issue 11):
every phase, a fixed seed, zero server errors and only declared content types (gateway_fuzz.GATE_CHECKS).

The platform is the one `make up` starts (the `platform` fixture); operations that start long
model work or change what the platform serves are left out (gateway_fuzz.EXCLUDED says why).
A longer run with a random seed is bench/fuzz/run.py; what it finds becomes a test here.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gateway_fuzz import EXCLUDED, GATEWAY_URL, merged_document, run_schemathesis

from harness import ManagedProcess, wait_until

SEED = 20261130
MAX_EXAMPLES = 8


@pytest.fixture(scope="module")
def api_key(platform: ManagedProcess, secrets: dict[str, str]) -> str:
    """The platform's first API key, once every app is ready behind the gateway."""
    key = secrets["gateway-api-keys"].split(",")[0].split("=")[0]

    def all_ready() -> bool:
        response = httpx.get(f"{GATEWAY_URL}/v1/system/health", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        return response.status_code == 200 and response.json()["status"] == "ready"

    wait_until(all_ready, what="every app to be ready", timeout=300, interval=1.0, watch=[platform])
    return key


def test_the_merged_document_has_no_server_errors_under_schemathesis(api_key: str, tmp_path: Path) -> None:
    document = merged_document(api_key)
    assert document["info"]["x-missing-apps"] == []
    assert {(m.upper(), p) for p, item in document["paths"].items() for m in item} >= set(EXCLUDED)
    run = run_schemathesis(document, api_key, tmp_path, seed=SEED, max_examples=MAX_EXAMPLES)
    assert run.returncode == 0, run.failures()


def test_a_search_with_top_k_is_a_422_naming_it(api_key: str) -> None:
    """Issue 11: `/v1/search` with `top_k: -5` was a 200 (the unknown field was ignored)."""
    response = httpx.post(
        f"{GATEWAY_URL}/v1/search",
        json={"query": "anything", "top_k": -5},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["location"] for error in response.json()["errors"]] == ["body.top_k"]
