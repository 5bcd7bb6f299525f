"""Base models a job starts from: the packaged SmolLM2 GGUF, or a version in the model registry.

The API process only locates and downloads files here; converting a GGUF (model work) happens
in the worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genai_models.files import packaged_gguf
from genai_models.registry import RegistryVersion, fetch_version
from genai_platform.registry_client import RegistryClient, RegistryError, RegistryNotFound
from training.errors import BaseModelNotFound, BaseModelNotReady, DependencyUnavailable
from training.models import PACKAGED_BASE, BaseModelRef


def describe_packaged() -> dict[str, Any]:
    """What a job records about the packaged base: the file it came from (cheap: no hashing of 100 MB)."""
    gguf = packaged_gguf()
    return {"source": "package", "name": PACKAGED_BASE, "gguf": gguf.name, "gguf_bytes": gguf.stat().st_size}


async def resolve_base(registry: RegistryClient, ref: BaseModelRef) -> dict[str, Any]:
    """What a job records about a registry base model: name, version and file name → sha256 (hex).

    Raises `BaseModelNotFound` when the registry has no such version, `BaseModelNotReady` when
    its files are still arriving, `DependencyUnavailable` when the registry cannot answer.
    """
    reference = ref.reference or "latest"
    try:
        version = await registry.get_version(ref.name, reference)
    except RegistryNotFound as error:
        raise BaseModelNotFound(f"There is no base model '{ref.name}' at '{reference}' in the registry.") from error
    except RegistryError as error:
        raise DependencyUnavailable("The model registry did not answer; try again.") from error
    if version.status != "ready":
        raise BaseModelNotReady(f"Version {version.version} of '{ref.name}' is not ready yet.")
    return {"source": "registry", "name": ref.name, "version": version.version, "files": version.files}


async def download_base(registry: RegistryClient, base: dict[str, Any], folder: Path) -> Path:
    """Fetch a registry base model's files (as `resolve_base` recorded them) into `folder` once,
    each checked against its sha256; raises the client's `RegistryError` or `ModelFilesMissing`."""
    version = RegistryVersion(name=base["name"], version=int(base["version"]), files=base["files"])
    return await fetch_version(registry, version, folder)
