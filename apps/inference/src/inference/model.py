"""Loading a chat model: the packaged GGUF, a Hugging Face folder or a .gguf file, onto a device."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from genai_models.files import ModelFilesMissing, converted_folder, packaged_gguf
from genai_platform.accelerators import resolved_dtype
from inference.batch import Forward, forward_for
from inference.settings import PACKAGED_MODEL, Dtype, Quantization

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
    # Which layers are held in 4 bits (`inference.llama.FastLlama`), where the lean forward takes the model.
    quantization: Quantization = Quantization.NONE

    @cached_property
    def forward(self) -> Forward:
        """The forward pass the engine runs: `FastLlama` for Llama-family models, else transformers'."""
        return forward_for(self.model, quantization=self.quantization)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of a conversation in the model's own chat template, ready for the reply."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.encode(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as given, without special tokens."""
        # The chat template already carries the special tokens; plain prompts get none either,
        # as OpenAI's /v1/completions feeds the text as given.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def pick_device(name: str) -> torch.device:
    """The torch device for a setting: "auto" is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(dtype: Dtype, device: torch.device) -> torch.dtype:
    """The torch dtype for a setting on `device` (genai_platform.accelerators.resolved_dtype: "auto"
    is bfloat16 on CUDA and on CPUs with AVX-512 BF16 or AMX, float32 on other CPUs)."""
    return getattr(torch, resolved_dtype(dtype, device.type))


def resolve_source(source: str, cache_dir: Path) -> Path:
    """The Hugging Face folder to load for a model source setting or event."""
    if source == PACKAGED_MODEL:
        try:
            return converted_folder(packaged_gguf(), cache_dir)
        except ModelFilesMissing as error:
            raise ModelNotFound(str(error)) from error
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
    quantization: Quantization = Quantization.AUTO,
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
    return LoadedModel(name, version, source, model, tokenizer, target, torch_dtype, limit, eos, pad, quantization)


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
