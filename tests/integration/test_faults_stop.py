"""Stopping `make up` is clean: no app, sidecar, placement or scheduler process is left behind and
every port is free again, whether the script gets SIGTERM (as from `kill` or from `make`, which
passes SIGTERM on) or `make down` stops it from another terminal; and a start refuses, naming
the process, when a port it needs is taken.

The platform is started by the same script `make up` runs (scripts/run-platform.sh), with the
apps' real commands from dapr.yaml.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness import ROOT, ManagedProcess, wait_until

RUN_FILE = yaml.safe_load((ROOT / "dapr.yaml").read_text())
APP_IDS = [app["appID"] for app in RUN_FILE["apps"]]
PORT_FIELDS = ("appPort", "daprHTTPPort", "daprGRPCPort", "daprInternalGRPCPort", "metricsPort")
PORTS = {app[field]: f"{app['appID']} {field}" for app in RUN_FILE["apps"] for field in PORT_FIELDS if field in app}
PGID_FILE = ROOT / ".data" / "platform" / "dapr-run.pgid"
SENTRY_PORT = 50001  # scripts/control-plane.sh sentry


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def group_members(pgid: int) -> dict[int, str]:
    """Every live process of process group `pgid`: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 5 of /proc/<pid>/stat is the process group; the command name before it may hold spaces.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


@pytest.fixture
def started(default_broker, log_dir: Path) -> Iterator[tuple[ManagedProcess, int, dict[int, str]]]:
    """`scripts/run-platform.sh default` with every app and sidecar listening: (script, CLI group, its members)."""
    assert not any(listening(port) for port in PORTS), "a platform port is taken before the test"
    PGID_FILE.unlink(missing_ok=True)
    script = ManagedProcess(
        "run-platform.sh",
        ["bash", str(ROOT / "scripts" / "run-platform.sh"), "default"],
        {**os.environ, "DAPR_RUNTIME_PATH": str(ROOT / ".runtime")},
        log_dir / "platform-stop.log",
    ).start()
    try:
        pgid = wait_until(
            lambda: PGID_FILE.exists() and int(PGID_FILE.read_text()), what="the pid file", timeout=240, watch=[script]
        )
        wait_until(
            lambda: all(listening(port) for port in PORTS),
            what="every app and sidecar port of dapr.yaml",
            timeout=240,
            interval=0.5,
            watch=[script],
        )
        yield script, pgid, group_members(pgid)
    finally:
        script.stop(60)  # only does something when a test failed before stopping it


def assert_all_gone(pgid: int, before: dict[int, str]) -> None:
    # What ran before the stop, so the check below is about real processes.
    commands = " | ".join(before.values())
    for needle in ("placement", "scheduler", *(f"-m {app}" for app in APP_IDS if app != "dapr-control-plane")):
        assert needle in commands, f"{needle} was not running: {commands}"
    assert sum("daprd" in command for command in before.values()) >= len(APP_IDS)
    sidecars = [command for command in before.values() if command.split(" ", 1)[0].endswith("/daprd")]
    assert sidecars and all("--enable-mtls" in command for command in sidecars)  # mTLS is the default
    wait_until(lambda: not group_members(pgid), what="every process of the platform to exit", timeout=30)
    assert [PORTS[port] for port in PORTS if listening(port)] == []
    assert not PGID_FILE.exists()
    # Dapr's sentry runs beside the CLI's group (it must serve before the first sidecar): gone too.
    wait_until(lambda: not listening(SENTRY_PORT), what="sentry to stop", timeout=15)
    assert not (ROOT / ".data" / "platform" / "sentry.pid").exists()


def test_sigterm_to_make_up_stops_every_app_and_sidecar(started) -> None:
    script, pgid, before = started
    assert script.popen is not None
    script.popen.send_signal(signal.SIGTERM)  # the script alone, as `make` passes SIGTERM on
    assert script.popen.wait(60) == 143
    assert_all_gone(pgid, before)


def test_make_down_stops_every_app_and_sidecar(started) -> None:
    script, pgid, before = started
    # `make up`'s one ready line, once every app answers /readyz: the time and where to go.
    ready = wait_until(
        lambda: next((line for line in script.log_path.read_text().splitlines() if "platform: ready in" in line), None),
        what="the ready line",
        timeout=240,
        interval=0.5,
        watch=[script],
    )
    assert re.fullmatch(
        r"platform: ready in \d+ s: ui http://127\.0\.0\.1:8090, gateway http://127\.0\.0\.1:8080 "
        r"\(API keys: \"gateway-api-keys\" in \.data/secrets\.json; .*\)",
        ready,
    ), ready
    # The first step of `make down` (the second stops the servers, which the other tests share).
    assert "@bash scripts/run-platform.sh stop" in (ROOT / "Makefile").read_text()
    down = subprocess.run(
        ["bash", str(ROOT / "scripts" / "run-platform.sh"), "stop"], capture_output=True, text=True, timeout=90
    )
    assert down.returncode == 0, down.stderr
    assert f"process group {pgid}" in down.stdout
    # Quiet: processes that exit while it looks at them (the script stops its own sentry meanwhile)
    # once made it print "/proc/<pid>/cmdline: No such file or directory".
    assert down.stderr == ""
    assert script.popen is not None
    script.popen.wait(30)  # the script sees the CLI go and exits too
    assert_all_gone(pgid, before)
    assert "No such file" not in script.log_path.read_text()


def test_make_up_refuses_a_taken_port_and_names_the_process() -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner
        squatter.bind(("127.0.0.1", 8080))  # the gateway's app port
        squatter.listen()
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "run-platform.sh"), "default"], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert "127.0.0.1:8080 (gateway's appPort) is already taken by" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr


def test_make_up_fails_naming_an_app_that_exits_during_start_up(default_broker, log_dir: Path) -> None:
    """A new-user trial: with a wrong setting (`FEATURES_DTYPE=bogus`) features exited at once, the
    CLI said only "The App process exited with error code" without naming it, and `make up`
    waited minutes for a ready line that could not come. Now the start fails, naming the app,
    with the end of its log, and stops everything it started."""
    assert not any(listening(port) for port in PORTS), "a platform port is taken before the test"
    script = ManagedProcess(
        "run-platform.sh",
        ["bash", str(ROOT / "scripts" / "run-platform.sh"), "default"],
        {**os.environ, "DAPR_RUNTIME_PATH": str(ROOT / ".runtime"), "FEATURES_DTYPE": "bogus"},
        log_dir / "platform-dead-app.log",
    ).start()
    try:
        assert script.popen is not None
        assert script.popen.wait(240) == 1
    finally:
        script.stop(60)
    log = script.log_path.read_text()
    assert "platform: error: features exited during start-up; its log (.dapr/logs/features_app_" in log
    assert "FEATURES_DTYPE" in log  # the settings error, from the end of its log
    assert "platform: ready in" not in log
    wait_until(lambda: not any(listening(port) for port in PORTS), what="every platform port to be free", timeout=30)
    assert not PGID_FILE.exists()
