"""Takes documents in, cleans, deduplicates and chunks them, and publishes them."""

from fastapi import FastAPI

from genai_platform.service import create_service
from ingestion.settings import IngestionSettings


def create_app(settings: IngestionSettings) -> FastAPI:
    return create_service(settings, title="Ingestion", description=__doc__)
