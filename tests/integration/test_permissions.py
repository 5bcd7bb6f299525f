"""API key scopes, key rotation and shared usage through real gateways, daprd and Redis.

The gateways read their keys from a secret store of this test's own (a local file store over a
copy of the platform's secrets with test keys), so a rotation here touches nothing else. The
scope of every route is unit-tested (tests/unit/test_gateway_scopes.py); here one refusal and one
pass go through the real secret store.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from harness import PROFILES, RESILIENCY_DIR, gateway_secret_store, start_pair, wait_until


def _write_keys(folder: Path, secrets: dict[str, str], version: int, keys: str) -> None:
    """A new secrets file holding `keys`, and the component pointed at it (daprd hot-reloads it)."""
    path = folder / f"secrets-{version}.json"
    path.write_text(json.dumps({**secrets, "gateway-api-keys": keys}))
    (folder / "resources" / "secretstore.yaml").write_text(gateway_secret_store(path))


@pytest.fixture
def resources(tmp_path: Path, secrets: dict[str, str]) -> Path:
    folder = tmp_path / "resources"
    folder.mkdir()
    (folder / "statestore.yaml").write_text((PROFILES["default"] / "statestore.yaml").read_text())
    _write_keys(tmp_path, secrets, 1, "k-read=documents:read,k-old=chat")
    return folder


def _get(url: str, key: str) -> httpx.Response:
    return httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_scopes_rotation_and_usage_across_gateways(default_broker, log_dir, secrets, resources: Path) -> None:
    # An hour's TTL: only SIGHUP makes the gateway read rotated keys within this test.
    options = {"resources": [resources, RESILIENCY_DIR], "env": {"GATEWAY_API_KEYS_TTL_SECONDS": "3600"}}
    first = start_pair("gateway", log_dir, secrets, timeout=60, **options)
    second = None
    try:
        url = first.app.url
        # A key without the scope: 403 naming it, from the real secret store's entry.
        refused = httpx.post(f"{url}/v1/documents", headers={"Authorization": "Bearer k-read"}, timeout=10)
        assert refused.status_code == 403 and refused.json()["missing_scopes"] == ["documents:write"]
        assert refused.headers["content-type"].startswith("application/problem+json")
        # With it, the request passes the gateway's check (on to ingestion, which is not running).
        passed = _get(f"{url}/v1/documents", "k-read")
        assert passed.status_code not in (401, 403), passed.text

        # Usage lives in Redis: a second gateway and a restarted one see the same count.
        unique = f"k-usage-{uuid.uuid4().hex}"
        _write_keys(resources.parent, secrets, 2, f"k-read=documents:read,{unique}=chat")

        def rotated() -> bool:
            # daprd reloads the component when its file changes; SIGHUP makes the gateway read again.
            first.app.process.signal(signal.SIGHUP)
            return _get(f"{url}/v1/usage", unique).status_code == 200

        wait_until(rotated, what="the rotated keys", timeout=30, interval=0.5, watch=first.processes)
        pids = [process.popen.pid for process in first.processes]
        assert _get(f"{url}/v1/usage", "k-old").status_code == 401  # rotated out
        assert [process.popen.pid for process in first.processes] == pids  # without a restart
        counted = _get(f"{url}/v1/usage", unique).json()["requests"]
        second = start_pair("gateway", log_dir, secrets, timeout=60, **options)
        assert _get(f"{second.app.url}/v1/usage", unique).json()["requests"] == counted + 1
        first.crash_and_restart_app()
        assert _get(f"{url}/v1/usage", unique).json()["requests"] == counted + 2
    finally:
        for pair in (second, first):
            if pair is not None:
                pair.stop()
