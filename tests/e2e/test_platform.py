"""The whole platform, started the way a user starts it (`dapr run -f .` via scripts/run-platform.sh)."""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import ROOT, SERVICES, ManagedProcess, wait_until


@pytest.fixture(scope="module")
def platform(log_dir: Path, secrets: dict[str, str]) -> Iterator[ManagedProcess]:
    env = {**os.environ, "DAPR_RUNTIME_PATH": str(ROOT / ".runtime")}
    process = ManagedProcess(
        "dapr run -f", ["bash", str(ROOT / "scripts" / "run-platform.sh"), "default"], env, log_dir / "platform.log"
    ).start()
    yield process
    # The CLI stops every app and sidecar it started on SIGINT, as on Ctrl-C.
    process.signal(signal.SIGINT)
    try:
        assert process.popen is not None
        process.popen.wait(30)
    except subprocess.TimeoutExpired:
        pass
    process.stop()


def test_every_app_is_ready_behind_the_gateway(platform: ManagedProcess, secrets: dict[str, str]) -> None:
    api_key = secrets["gateway-api-keys"].split(",")[0]

    def all_ready() -> dict | None:
        response = httpx.get(
            "http://127.0.0.1:8080/v1/system/health", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        body = response.json()
        return body if response.status_code == 200 and body["status"] == "ready" else None

    body = wait_until(all_ready, what="every app to be ready", timeout=240, interval=1.0, watch=[platform])
    assert set(body["apps"]) == SERVICES
    assert all(entry["ready"] for entry in body["apps"].values())
