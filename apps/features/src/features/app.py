"""Feature engineering: embeddings, keyword statistics, vector and keyword search."""

from fastapi import FastAPI
from genai_platform.service import create_service

from features.settings import FeaturesSettings


def create_app(settings: FeaturesSettings) -> FastAPI:
    return create_service(settings, title="Features", description=__doc__)
