"""LLM serving: continuous batching, streaming, hot swap of model versions."""

from fastapi import FastAPI
from genai_platform.service import create_service

from inference.settings import InferenceSettings


def create_app(settings: InferenceSettings) -> FastAPI:
    return create_service(settings, title="Inference", description=__doc__)
