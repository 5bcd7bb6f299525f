"""What mTLS between sidecars (with the callee's access policy) costs: start-up and per call.

    flock -o /tmp/genai-tests.lock uv run --frozen python bench/mtls/run.py [--calls 200]

Two rows, plain and mTLS, each on fresh processes through tests/harness.py:
- start: Dapr's placement and scheduler (TLS with mTLS, and sentry's first start, which makes
  its CA) and three bare sidecars, until every one answers /v1.0/healthz: seconds.
- invoke: `calls` sequential GETs from a caller's daprd through the callee's daprd to a tiny
  HTTP app (one thread, answers 200 at once), after 20 warm-up calls: p50 and p95 in ms. With
  mTLS the callee's sidecar also checks the caller's SPIFFE id against an accessControl policy
  that allows it (deny by default), as every sidecar of the platform does.
Prints a table, the ratio mTLS / plain beside each figure, and writes JSON to bench/results/.
Hold the test lock: it shares the machine-wide name-resolution file with the tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from harness import PROFILES, RESILIENCY_DIR, ControlPlane, Daprd, read_secrets  # noqa: E402


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def policy(folder: Path, callee: str, caller: str) -> Path:
    """An accessControl layer for `callee`: `caller` may GET anything, everyone else is refused."""
    path = folder / f"{callee}-access.yaml"
    path.write_text(
        f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: {callee}-access\nspec:\n"
        "  accessControl:\n    defaultAction: deny\n    trustDomain: public\n    policies:\n"
        f"      - appId: {caller}\n        defaultAction: deny\n        trustDomain: public\n"
        "        namespace: default\n        operations:\n"
        "          - name: /**\n            httpVerb: [GET]\n            action: allow\n"
    )
    return path


def measure(mtls: bool, calls: int, folder: Path, secrets: dict[str, str]) -> dict:
    tag = uuid.uuid4().hex[:6]
    caller, callee = f"bench-caller-{tag}", f"bench-callee-{tag}"
    resources = [PROFILES["default"], RESILIENCY_DIR]
    server = HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    started = time.perf_counter()
    plane = ControlPlane(log_dir=folder, data_dir=folder / f"plane-{tag}", tls=mtls).start()
    sidecars = [
        Daprd(
            app_id=app_id,
            resources=resources,
            log_dir=folder,
            dapr_api_token=secrets["dapr-api-token"],
            mtls=mtls,
            extra_args=[*plane.daprd_args, *extra],
        )
        for app_id, extra in (
            (caller, []),
            (callee, ["--config", str(policy(folder, callee, caller))] if mtls else []),
            (f"bench-idle-{tag}", []),
        )
    ]
    sidecars[1].app_port = server.server_address[1]
    try:
        for sidecar in sidecars:
            sidecar.start()
        for sidecar in sidecars:
            sidecar.wait_ready()
        start_s = time.perf_counter() - started
        times = []
        with sidecars[0].client() as dapr:
            for i in range(calls + 20):
                begin = time.perf_counter()
                dapr.get(f"/v1.0/invoke/{callee}/method/ping").raise_for_status()
                if i >= 20:
                    times.append((time.perf_counter() - begin) * 1000)
            # The policy holds: with mTLS a POST is refused by the callee's sidecar.
            refused = dapr.post(f"/v1.0/invoke/{callee}/method/ping").status_code if mtls else None
    finally:
        for sidecar in sidecars:
            if sidecar.process is not None:
                sidecar.process.stop()
        plane.stop()
        server.shutdown()
    return {
        "mtls": mtls,
        "start_s": round(start_s, 2),
        "invoke_p50_ms": round(statistics.median(times), 3),
        "invoke_p95_ms": round(percentile(times, 0.95), 3),
        "calls": calls,
        "refused_post_status": refused,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    secrets = read_secrets()
    folder = Path(tempfile.mkdtemp(prefix="bench-mtls-"))
    rows = [measure(False, args.calls, folder, secrets), measure(True, args.calls, folder, secrets)]
    plain, secure = rows
    lines = [f"{'sidecars':<8} {'start s':>8} {'x':>6} {'invoke p50 ms':>14} {'x':>6} {'p95 ms':>8} {'x':>6}", "-" * 62]
    for row in rows:
        lines.append(
            f"{'mTLS' if row['mtls'] else 'plain':<8} {row['start_s']:>8.2f} {row['start_s'] / plain['start_s']:>6.2f}"
            f" {row['invoke_p50_ms']:>14.2f} {row['invoke_p50_ms'] / plain['invoke_p50_ms']:>6.2f}"
            f" {row['invoke_p95_ms']:>8.2f} {row['invoke_p95_ms'] / plain['invoke_p95_ms']:>6.2f}"
        )
    lines.append(f"mTLS: a POST outside the policy answered {secure['refused_post_status']}; logs in {folder}")
    sys.stdout.write("\n".join(lines) + "\n")
    out = ROOT / "bench" / "results" / f"mtls-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
