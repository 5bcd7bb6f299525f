"""Models, versions, aliases, lineage and artifacts."""

from fastapi import FastAPI

from genai_platform.service import create_service
from registry.settings import RegistrySettings


def create_app(settings: RegistrySettings) -> FastAPI:
    return create_service(settings, title="Model registry", description=__doc__)
