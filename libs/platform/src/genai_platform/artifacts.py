"""Which model files the platform stores: the registry enforces it, producers pick by it."""

from __future__ import annotations

import re

# Weights as safetensors; tokenizer and config files as the JSON/text they are. Formats that
# unpickle on load (.bin, .pt, .pth, .ckpt, .pkl) can run code, so they are refused by name.
ALLOWED_NAMES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "added_tokens.json",
        "chat_template.jinja",
        "model.safetensors.index.json",
    }
)
SAFETENSORS = re.compile(r"^[A-Za-z0-9._-]{1,120}\.safetensors$")
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def is_storable(filename: str) -> bool:
    """True for the files the registry accepts as a version's artifacts."""
    return filename in ALLOWED_NAMES or SAFETENSORS.match(filename) is not None
