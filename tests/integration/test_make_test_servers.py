"""`make test` stops the servers it started and only those (scripts/run-tests.sh).

The script is run as `make test` runs it, with `TEST_SERVERS=mosquitto`: a real server that no
profile and no other test uses, so stopping it here cannot disturb the suite this test runs in.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from harness import ROOT

MOSQUITTO_PORT = 1883
PID_FILE = ROOT / ".data" / "mosquitto" / "mosquitto.pid"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def infra(*args: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), *args], check=True, capture_output=True, timeout=90)


def run_tests(*pytest_args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "run-tests.sh"), *pytest_args],
        env={**os.environ, "TEST_SERVERS": "mosquitto"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def mosquitto_stopped():
    if listening(MOSQUITTO_PORT) and not PID_FILE.exists():
        pytest.skip("127.0.0.1:1883 is held by a mosquitto this checkout did not start")
    infra("stop", "mosquitto")
    yield
    infra("stop", "mosquitto")


def test_a_server_the_run_started_is_stopped_and_pytest_status_kept(mosquitto_stopped) -> None:
    # An unknown option: pytest exits 4 (usage error) after the server was started.
    result = run_tests("--no-such-option")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "mosquitto: ready on 127.0.0.1:1883" in result.stdout, result.stdout
    assert "stopping the servers this run started: mosquitto" in result.stdout, result.stdout
    assert not listening(MOSQUITTO_PORT)
    assert not PID_FILE.exists()


def test_a_server_running_before_is_left_running(mosquitto_stopped) -> None:
    infra("start", "mosquitto")
    pid = PID_FILE.read_text().strip()
    result = run_tests("--version")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mosquitto: already running" in result.stdout, result.stdout
    assert "stopping the servers" not in result.stdout
    assert listening(MOSQUITTO_PORT)
    assert PID_FILE.read_text().strip() == pid
