"""The long fuzzing run: schemathesis over the gateway's merged OpenAPI document, random seed.

`make test` runs the same command line with a fixed seed, 8 examples per operation and the
gate's checks (no 5xx, declared content types; tests/fuzz); this run draws a new seed each time
(printed, so a finding can be replayed with `--seed`), runs more examples for `--max-time`
seconds with every check (declared statuses and bodies too), and prints a table of the failures
by operation and check. Each finding becomes a test (tests/fuzz, or a unit or integration test of
the app at fault). Against the platform `make up` runs (on 127.0.0.1:8080), or one this script
starts the same way and stops afterwards.

    uv run python bench/fuzz/run.py [--seed N] [--max-examples 50] [--max-time 900] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

from gateway_fuzz import ALL_CHECKS, GATEWAY_URL, merged_document, run_schemathesis  # noqa: E402

from harness import ManagedProcess, read_secrets, wait_until  # noqa: E402


def platform_ready(api_key: str) -> bool:
    try:
        response = httpx.get(
            f"{GATEWAY_URL}/v1/system/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json()["status"] == "ready"


def failures_by_operation(junit: Path) -> Counter[tuple[str, str]]:
    """(operation, check or error) -> how many times, from schemathesis' JUnit report."""
    found: Counter[tuple[str, str]] = Counter()
    if not junit.exists():
        return found
    for case in ET.parse(junit).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                found[(case.get("name", "?"), child.get("message") or child.tag)] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a new random seed)")
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument("--max-time", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    api_key = read_secrets()["gateway-api-keys"].split(",")[0].split("=")[0]

    started: ManagedProcess | None = None
    out = ROOT / "bench" / "results" / f"fuzz-{seed}"
    if not platform_ready(api_key):
        env = {**os.environ, "DAPR_RUNTIME_PATH": str(ROOT / ".runtime")}
        log = out / "platform.log"
        started = ManagedProcess("platform", ["bash", str(ROOT / "scripts" / "run-platform.sh")], env, log).start()
        wait_until(lambda: platform_ready(api_key), what="the platform", timeout=600, interval=2.0, watch=[started])
    try:
        began = time.monotonic()
        run = run_schemathesis(
            merged_document(api_key),
            api_key,
            out,
            seed=seed,
            max_examples=args.max_examples,
            checks=ALL_CHECKS,
            workers=args.workers,
            max_time=args.max_time,
            timeout=args.max_time + 600,
        )
        elapsed = time.monotonic() - began
    finally:
        if started is not None:
            started.signal(signal.SIGINT)  # as Ctrl-C on `make up`
            started.stop(timeout=60)

    found = failures_by_operation(run.junit)
    rows = [("operation", "check", "count"), *((op, check, str(n)) for (op, check), n in sorted(found.items()))]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"seed {seed}, {elapsed:.0f} s, schemathesis exit {run.returncode}"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    if not found:
        lines.append("(no failures)")
    sys.stdout.write("\n".join(lines) + "\n")
    (out / "summary.json").write_text(
        json.dumps({"seed": seed, "seconds": round(elapsed), "exit": run.returncode, "failures": len(found)})
    )
    (out / "output.txt").write_text(run.output)
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
