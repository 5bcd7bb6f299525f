"""A registry version's files fetched through Dapr service invocation, each checked by sha256.

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
from typing import Any

from genai_models.files import ModelFilesMissing, publish_folder
from genai_platform.dapr import Sidecar


@dataclass(frozen=True)
class RegistryVersion:
    """A ready version as the registry describes it: enough to fetch and check its files."""

    name: str
    version: int
    files: dict[str, str]  # file name → sha256
    aliases: tuple[str, ...] = ()

    @property
    def content_id(self) -> str:
        """A short digest over every file's sha256: different files, different id."""
        listing = "\n".join(f"{name}:{sha}" for name, sha in sorted(self.files.items()))
        return hashlib.sha256(listing.encode()).hexdigest()[:16]

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> RegistryVersion:
        return cls(
            name=body["name"],
            version=int(body["version"]),
            files={name: artifact["sha256"] for name, artifact in body.get("artifacts", {}).items()},
            aliases=tuple(body.get("aliases", ())),
        )


async def fetch_version(sidecar: Sidecar, registry_app_id: str, version: RegistryVersion, folder: Path) -> Path:
    """The local folder holding `version`'s files, downloaded once and verified file by file."""
    # Named by content too: a registry rebuilt from scratch numbers its versions from 1 again,
    # and must not be answered with another registry's version 1 from this cache.
    target = folder / version.name / f"{version.version}-{version.content_id}"
    if (target / "config.json").exists():
        return target
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    staging = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".download-", dir=folder))
    try:
        for filename, sha256 in sorted(version.files.items()):
            path = f"v1/models/{version.name}/versions/{version.version}/files/{filename}"
            digest = hashlib.sha256()
            async with sidecar.invoke_stream(registry_app_id, path, method="GET", timeout=300) as response:
                if response.status_code != 200:
                    raise ModelFilesMissing(f"the registry answered {response.status_code} for {filename}")
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
