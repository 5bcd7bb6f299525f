"""The web front end: chat, documents, jobs, models, prompts and system health."""

from fastapi import FastAPI

from genai_platform.service import create_service
from ui.settings import UiSettings


def create_app(settings: UiSettings) -> FastAPI:
    return create_service(settings, title="Web UI", description=__doc__)
