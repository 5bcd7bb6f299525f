"""Serving a version from the model registry: `INFERENCE_MODEL=registry:<model>@<alias>`.

The alias (or a version number) is resolved through the shared registry client, the version's
files are fetched once into the model cache and checked by sha256, and later
`model.promoted` events for that model and alias bring the next version the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from genai_models.registry import RegistryVersion, fetch_version
from genai_platform.registry_client import RegistryClient

PREFIX = "registry:"
REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]{0,99})(?:(?P<sep>[@:])(?P<ref>[A-Za-z0-9_-]{1,50}))?$")


class RegistryNotReady(Exception):
    """The registry's version is there but not ready yet (its files still arriving)."""


@dataclass(frozen=True)
class RegistryRef:
    """Which registry version to serve: a model and an alias (`production`) or a version number."""

    name: str
    reference: str = "production"

    @classmethod
    def parse(cls, source: str) -> RegistryRef | None:
        """The reference in a `registry:` model source; None for any other source."""
        if not source.startswith(PREFIX):
            return None
        match = REFERENCE.match(source[len(PREFIX) :])
        if match is None:
            raise ValueError(f"{source!r} is not registry:<model>, registry:<model>@<alias> or registry:<model>:<n>")
        return cls(match["name"], match["ref"] or "production")

    def follows(self, model: str | None, alias: str | None) -> bool:
        """Whether a promotion of `model` to `alias` is one this reference should serve."""
        return model == self.name and alias == self.reference

    def __str__(self) -> str:
        return f"{PREFIX}{self.name}@{self.reference}"


async def fetch_from_registry(registry: RegistryClient, name: str, reference: str, cache_dir: Path) -> tuple[Path, int]:
    """The local folder of a registry version, and its number.

    Raises `RegistryNotReady` while the version's files are still arriving, and the client's
    `RegistryError` family when the registry has no such version (`RegistryNotFound`) or cannot
    answer (`RegistryUnavailable`).
    """
    version = await registry.get_version(name, reference)
    if version.status != "ready":
        raise RegistryNotReady(f"version {version.version} of {name} is not ready yet")
    folder = await fetch_version(registry, RegistryVersion.of(version), cache_dir / "registry")
    return folder, version.version
