"""A registry version's files fetched through the shared registry client, each checked by sha256.

Training downloads its base model this way and inference its `production` version; the folder
is written once per (model, version) and reused, since registry versions are immutable.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genai_models.files import ModelFilesMissing, publish_folder
from genai_platform.contracts.registry import Version
from genai_platform.registry_client import RegistryClient


@dataclass(frozen=True)
class RegistryVersion:
    """A ready version's files to fetch and check: model name, version number, file name → sha256 (hex)."""

    name: str
    version: int
    files: dict[str, str]

    @property
    def content_id(self) -> str:
        """A short digest over every file's sha256: different files, different id."""
        listing = "\n".join(f"{name}:{sha}" for name, sha in sorted(self.files.items()))
        return hashlib.sha256(listing.encode()).hexdigest()[:16]

    @classmethod
    def of(cls, version: Version) -> RegistryVersion:
        """The files to fetch for a version the registry answered with."""
        return cls(name=version.model, version=version.version, files=version.files)


async def fetch_version(registry: RegistryClient, version: RegistryVersion, folder: Path) -> Path:
    """The local folder holding `version`'s files, downloaded once and verified file by file.

    Raises the registry client's `RegistryError` when a file cannot be had, `ModelFilesMissing`
    when one arrives but does not match its sha256.
    """
    # Named by content too: a registry rebuilt from scratch numbers its versions from 1 again,
    # and must not be answered with another registry's version 1 from this cache.
    target = folder / version.name / f"{version.version}-{version.content_id}"
    if (target / "config.json").exists():
        return target
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    staging = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".download-", dir=folder))
    try:
        for filename, sha256 in sorted(version.files.items()):
            digest = hashlib.sha256()
            async with registry.download(version.name, version.version, filename) as response:
                with (staging / filename).open("wb") as out:
                    async for chunk in response.aiter_bytes(1 << 20):
                        digest.update(chunk)
                        await asyncio.to_thread(out.write, chunk)
            if digest.hexdigest() != sha256:
                raise ModelFilesMissing(f"{filename} of {version.name} v{version.version} does not match its sha256")
        await asyncio.to_thread(publish_folder, staging, target)
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    return target
