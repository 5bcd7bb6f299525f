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
import unicode_cases
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


# Operations left out of the sweep: gateway_fuzz.EXCLUDED's, which start model work or move what
# the platform serves should a case get past the rule. tests/unit/test_unicode_text.py sends them
# too, to the gateway in process, where nothing can start.
def test_every_string_that_is_not_unicode_is_a_422_naming_it(api_key: str) -> None:
    """A new-user trial: `POST /v1/embeddings` with `"x\\ud800y"` was a 500. Every operation of the
    merged document, every string of its JSON body (top level and two levels down, object keys
    included) holding a lone surrogate, every query and path parameter and form field holding
    bytes that are not UTF-8 (unicode_cases): never a 5xx, always a 422 problem+json naming it."""
    sweep = unicode_cases.cases(merged_document(api_key), excluded=set(EXCLUDED))
    assert len({(case.method, case.path) for case in sweep}) >= 25
    failures = []
    with httpx.Client(base_url=GATEWAY_URL, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as http:
        for case in sweep:
            url = case.url + (f"?{case.query}" if case.query else "")
            if case.content_type == "multipart/form-data":
                answer = http.request(case.method, url, data=case.data, files=case.files)  # type: ignore[arg-type]
            else:
                headers = {"Content-Type": case.content_type} if case.content_type else {}
                answer = http.request(case.method, url, content=case.content, headers=headers)
            named = answer.status_code == 422 and case.location in [
                error["location"] for error in answer.json().get("errors", [])
            ]
            if not (named and answer.headers["content-type"] == "application/problem+json"):
                failures.append(f"{case.id}: {answer.status_code} {answer.text[:300]}")
    assert failures == [], "\n".join(failures)
