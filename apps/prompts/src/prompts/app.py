"""Prompt templates with immutable versions, labels and typed variables."""

from fastapi import FastAPI

from genai_platform.service import create_service
from prompts.settings import PromptsSettings


def create_app(settings: PromptsSettings) -> FastAPI:
    return create_service(settings, title="Prompts", description=__doc__)
