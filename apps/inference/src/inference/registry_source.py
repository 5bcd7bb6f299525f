"""Serving a version from the model registry: `INFERENCE_MODEL=registry:<model>@<alias>`.

The alias (or a version number) is resolved through Dapr service invocation, the version's
files are fetched once into the model cache and checked by sha256, and later
`model.promoted` events for that model and alias bring the next version the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from genai_models.registry import RegistryVersion, fetch_version
from genai_platform.dapr import Sidecar

PREFIX = "registry:"
REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._-]{0,99})(?:(?P<sep>[@:])(?P<ref>[A-Za-z0-9_-]{1,50}))?$")


class RegistryNotReady(Exception):
    """The registry cannot hand over the version yet (not started, not seeded, no such alias)."""


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


async def fetch_from_registry(
    sidecar: Sidecar, registry_app_id: str, name: str, reference: str, cache_dir: Path
) -> tuple[Path, int]:
    """The local folder of a registry version, and its number."""
    response = await sidecar.invoke(registry_app_id, f"v1/models/{name}/versions/{reference}", method="GET")
    if response.status_code == 404:
        raise RegistryNotReady(f"the registry has no {name}@{reference} yet")
    if response.status_code >= 400:
        raise RegistryNotReady(f"the registry answered {response.status_code}")
    body = response.json()
    if body.get("status") != "ready":
        raise RegistryNotReady(f"version {body.get('version')} of {name} is not ready yet")
    version = RegistryVersion.from_api({**body, "name": name})
    folder = await fetch_version(sidecar, registry_app_id, version, cache_dir / "registry")
    return folder, version.version
