"""podman as the tests use it: the project's containers.conf and the images' names."""

from __future__ import annotations

import os
import subprocess

import pytest

from harness import ROOT

PODMAN_CONF = ROOT / ".runtime" / "podman" / "containers.conf"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(PODMAN_CONF)}
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=120)


def image_of(app: str) -> str:
    version = next(
        line.split('"')[1]
        for line in (ROOT / "apps" / app / "pyproject.toml").read_text().splitlines()
        if line.startswith("version = ")
    )
    # podman keeps locally built images under localhost/; a short name could be looked up remotely.
    return f"localhost/genai-platform/{app}:{version}"


def require_image(app: str) -> str:
    image = image_of(app)
    if podman("image", "exists", image).returncode != 0:
        pytest.skip(f"image {image} is not built: run `scripts/build-images.sh {app}`")
    return image
