"""LLM serving: continuous batching, streaming, hot swap of model versions."""
