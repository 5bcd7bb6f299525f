"""Schemathesis over the gateway's merged OpenAPI document: the command line both runs share.

`make test` runs it with a fixed seed and a small budget (tests/fuzz/test_gateway_fuzz.py);
bench/fuzz/run.py runs it longer with a random seed. Every phase schemathesis has runs:
examples, coverage (boundary values of every constraint), fuzzing, and stateful (it follows the
document's links from each create operation to the operations that take its id).
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import httpx

GATEWAY_URL = "http://127.0.0.1:8080"
PHASES = ("examples", "coverage", "fuzzing", "stateful")
# No answer may be a 5xx, and its content type must be one the document declares for its status.
GATE_CHECKS = ("not_a_server_error", "content_type_conformance")
# The long run also wants every status and body declared. What these find depends on what the
# stores hold from earlier runs (a found id answers 200, a made-up one 404), which the seed does not
# fix, so they are the long run's findings rather than `make test`'s gate.
ALL_CHECKS = (*GATE_CHECKS, "status_code_conformance", "response_schema_conformance")
# Operations left out, with why: each starts long model work (minutes of CPU per case) or changes
# what the platform serves to the tests that run after this one.
EXCLUDED = {
    ("POST", "/v1/chat/completions"): "generates with the model: up to its max_tokens on CPU per case",
    ("POST", "/v1/completions"): "generates with the model: up to its max_tokens on CPU per case",
    ("POST", "/v1/fine_tuning/jobs"): "starts a fine-tuning run (minutes of CPU)",
    ("POST", "/v1/fine_tuning/workflows"): "fine-tunes, registers and promotes a model",
    ("PUT", "/v1/registry/models/{name}/aliases/{alias}"): "moves `production`: inference hot-swaps its model",
}


@dataclass
class FuzzRun:
    """One schemathesis run's outcome: its exit status and what it printed."""

    returncode: int
    output: str
    junit: Path

    def failures(self) -> str:
        """Each failing operation with schemathesis' account of it (a curl line that replays it),
        or the tail of the output when there is no report."""
        if not self.junit.exists():
            return self.output[-20_000:]
        found = [
            f"{case.get('name')}: {child.get('message') or child.tag}\n{(child.text or '')[:3000]}"
            for case in ET.parse(self.junit).getroot().iter("testcase")
            for child in case
            if child.tag in ("failure", "error")
        ]
        return "\n\n".join(found) if found else self.output[-20_000:]


def merged_document(api_key: str) -> dict:
    """GET /v1/openapi.json through the gateway."""
    response = httpx.get(f"{GATEWAY_URL}/v1/openapi.json", headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
    response.raise_for_status()
    return response.json()


def run_schemathesis(
    document: dict,
    api_key: str,
    workdir: Path,
    *,
    seed: int | None,
    max_examples: int,
    checks: tuple[str, ...] = GATE_CHECKS,
    workers: int = 1,
    max_time: float | None = None,
    timeout: float = 600,
) -> FuzzRun:
    """Run `schemathesis run` over `document` against the gateway; returns when it is done."""
    workdir.mkdir(parents=True, exist_ok=True)
    schema = workdir / "openapi.json"
    schema.write_text(json.dumps(document))
    junit = workdir / "junit.xml"
    argv = [
        str(Path(sys.executable).with_name("schemathesis")), "run", str(schema),
        "--url", GATEWAY_URL,
        "--header", f"Authorization: Bearer {api_key}",
        "--phases", ",".join(PHASES),
        "--checks", ",".join(checks),
        "--max-examples", str(max_examples),
        "--workers", str(workers),
        "--request-timeout", "60",
        "--report", "junit", "--report-junit-path", str(junit),
        "--output-sanitize", "true",
        "--no-color",
    ]  # fmt: skip
    if seed is not None:
        argv += ["--seed", str(seed)]
    if max_time is not None:
        argv += ["--max-time", str(int(max_time))]
    for method, path in EXCLUDED:
        operation = document["paths"].get(path, {}).get(method.lower(), {})
        if "operationId" in operation:
            argv += ["--exclude-operation-id", operation["operationId"]]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    return FuzzRun(done.returncode, done.stdout + done.stderr, junit)
