"""Base models a job starts from: the packaged SmolLM2 GGUF, or a version in the model registry.

The API process only locates and downloads files here; converting a GGUF (model work) happens
in the worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genai_models.files import packaged_gguf
from genai_models.registry import RegistryVersion, fetch_version
from genai_platform.dapr import Sidecar
from genai_platform.errors import Problem
from training.models import PACKAGED_BASE, BaseModelRef


def describe_packaged() -> dict[str, Any]:
    """What a job records about the packaged base: the file it came from (cheap: no hashing of 100 MB)."""
    gguf = packaged_gguf()
    return {"source": "package", "name": PACKAGED_BASE, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size}


class RegistryClient:
    """The registry's API as the training service uses it, through Dapr service invocation."""

    def __init__(self, sidecar: Sidecar, app_id: str) -> None:
        self.sidecar = sidecar
        self.app_id = app_id

    async def call(self, method: str, path: str, **kwargs: Any):
        return await self.sidecar.invoke(self.app_id, path, method=method, **kwargs)

    async def resolve(self, ref: BaseModelRef) -> dict[str, Any]:
        """The ready registry version a reference names; Problem 404 when there is none."""
        reference = ref.reference or "latest"
        response = await self.call("GET", f"v1/models/{ref.name}/versions/{reference}")
        if response.status_code == 404:
            raise Problem(404, f"There is no base model '{ref.name}' at '{reference}' in the registry.")
        if response.status_code >= 400:
            raise Problem(503, "The model registry did not answer; try again.", headers={"Retry-After": "5"})
        version = response.json()
        if version.get("status") != "ready":
            raise Problem(422, f"Version {version.get('version')} of '{ref.name}' is not ready yet.")
        return {
            "source": "registry",
            "name": ref.name,
            "version": version["version"],
            "files": {name: artifact["sha256"] for name, artifact in version.get("artifacts", {}).items()},
        }

    async def download(self, base: dict[str, Any], folder: Path) -> Path:
        """Fetch a registry version's files into `folder` once, each checked against its sha256."""
        version = RegistryVersion(name=base["name"], version=int(base["version"]), files=base["files"])
        return await fetch_version(self.sidecar, self.app_id, version, folder)
