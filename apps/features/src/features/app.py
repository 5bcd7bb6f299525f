"""Feature engineering: embeddings, keyword statistics, vector and keyword search."""

from fastapi import FastAPI

from features.settings import FeaturesSettings
from genai_platform.service import create_service


def create_app(settings: FeaturesSettings) -> FastAPI:
    return create_service(settings, title="Features", description=__doc__)
