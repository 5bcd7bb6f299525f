"""Local key rotation in one command, touching no tracked file (scripts/api_keys.py).

A real gateway and its daprd are laid out as `make up` lays them out: the gateway reads its keys
from its own store, `gateway-keys`, whose component file (written by `api_keys.py reload`) sits in
one of the sidecar's resources paths, over a secrets file of this test's own. The command writes
the file and rewrites the component; daprd's hot reload initialises that one store again, then the
app gets SIGHUP. A key added is accepted, one removed or rotated out is refused, the sidecar's
/metrics still answers (a SIGHUP to daprd 1.18 left it a 500), and nothing restarted, not even
in-process. The gateway's TTL is an hour, so nothing but the command can make it read again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.api_keys import key_digest
from harness import PROFILES, RESILIENCY_DIR, ROOT, gateway_secret_store, start_pair, wait_until


@pytest.fixture
def secrets_file(tmp_path: Path, secrets: dict[str, str]) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({**secrets, "gateway-api-keys": "k-first=chat"}))
    resources = tmp_path / "resources"
    resources.mkdir()
    # The profile's store, as in `make up`: the state store takes its password from it.
    (resources / "secretstore.yaml").write_text(gateway_secret_store(path))
    (resources / "statestore.yaml").write_text((PROFILES["default"] / "statestore.yaml").read_text())
    return path


def api_keys(secrets_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    component = secrets_file.parent / "dapr-resources" / "gateway-keys.yaml"
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "api_keys.py"), "--secrets", str(secrets_file)]
        + ["--component", str(component), *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def status(url: str, key: str) -> int:
    return httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code


def usage(url: str, key: str) -> dict:
    answer = httpx.get(f"{url}/v1/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_key_added_removed_and_rotated_by_one_command(default_broker, log_dir, secrets, secrets_file: Path) -> None:
    # With no gateway running, `reload` only writes the key store's component.
    first = api_keys(secrets_file, "reload")
    assert first.returncode == 0 and "0 running gateway(s) reloaded" in first.stderr, first.stderr
    keys_dir = secrets_file.parent / "dapr-resources"
    resources = [secrets_file.parent / "resources", RESILIENCY_DIR, keys_dir]
    env = {"GATEWAY_API_KEYS_TTL_SECONDS": "3600", "SECRET_STORE": "gateway-keys"}
    gateway = start_pair("gateway", log_dir, secrets, timeout=60, resources=resources, env=env)
    try:
        url, metrics = gateway.app.url, f"http://127.0.0.1:{gateway.sidecar.metrics_port}/metrics"
        pids = [process.popen.pid for process in gateway.processes]
        assert status(url, "k-first") == 200
        assert httpx.get(metrics, timeout=10).status_code == 200

        added = api_keys(secrets_file, "add", "chat", "documents:read")
        assert added.returncode == 0, added.stderr
        assert "1 running gateway(s) reloaded" in added.stderr
        new_key = added.stdout.strip()
        assert new_key.startswith("gk-")
        # The app takes SIGHUP asynchronously: at most a moment after the command returns.
        wait_until(lambda: status(url, new_key) == 200, what="the added key accepted", timeout=10, interval=0.2)
        assert status(url, "k-first") == 200  # an added key replaces nothing

        removed = api_keys(secrets_file, "remove", "k-first")
        assert removed.returncode == 0, removed.stderr
        wait_until(lambda: status(url, "k-first") == 401, what="the removed key refused", timeout=10, interval=0.2)

        before = usage(url, new_key)
        rotated = api_keys(secrets_file, "rotate", new_key)
        assert rotated.returncode == 0, rotated.stderr
        newer_key = rotated.stdout.strip()
        wait_until(lambda: status(url, newer_key) == 200, what="the rotated key accepted", timeout=10, interval=0.2)
        assert status(url, new_key) == 401
        digest = key_digest(new_key)
        assert (
            json.loads(secrets_file.read_text())["gateway-api-keys"]
            == f"{newer_key}=chat documents:read project={digest}"
        )
        # The successor's usage carries on from its predecessor's (a rotation reset the day's count).
        after = usage(url, newer_key)
        assert after["project"] == digest and after["requests"] > before["requests"] >= 2

        unknown = api_keys(secrets_file, "add", "no-such-scope")
        assert unknown.returncode == 1 and "unknown scopes ['no-such-scope']" in unknown.stderr

        # Three reloads, and the sidecar's metrics still answer: no in-process restart happened.
        assert httpx.get(metrics, timeout=10).status_code == 200
        assert [process.popen.pid for process in gateway.processes] == pids  # nothing restarted
        log = gateway.sidecar.process.log_path.read_text()
        assert log.count("Component updated: gateway-keys") == 3
        assert "Received signal 'hangup'" not in log
    finally:
        gateway.stop()
