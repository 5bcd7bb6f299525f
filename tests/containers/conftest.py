"""podman's Docker-compatible API for testcontainers, served on a unix socket for the session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest
from podman_engine import PODMAN_CONF, podman

from harness import ManagedProcess, wait_until


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`podman system service` on a socket of our own; DOCKER_HOST for testcontainers."""
    if shutil.which("podman") is None or not PODMAN_CONF.is_file():
        pytest.skip("no container engine: podman is not set up here (scripts/build-images.sh sets it up)")
    if podman("info").returncode != 0:
        pytest.skip(f"podman does not run containers here: {podman('info').stderr.strip()[:300]}")
    folder = tmp_path_factory.mktemp("podman")
    socket = folder / "podman.sock"
    service = ManagedProcess(
        "podman system service",
        ["podman", "system", "service", "--time=0", f"unix://{socket}"],
        {**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF)},
        folder / "podman-service.log",
    ).start()
    transport = httpx.HTTPTransport(uds=str(socket))
    with httpx.Client(transport=transport, base_url="http://podman") as client:
        wait_until(lambda: client.get("/_ping").status_code == 200, what="podman's API socket", watch=[service])
    host = f"unix://{socket}"
    saved = {k: os.environ.get(k) for k in ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED")}
    os.environ["DOCKER_HOST"] = host
    # Ryuk (testcontainers' reaper) is an image from a registry, which is unreachable here; every
    # container is stopped and removed by the test that started it instead.
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    yield host
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    service.stop()
