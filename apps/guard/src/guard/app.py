"""Input and output rails: injection, PII, blocklists, schema checks."""

from fastapi import FastAPI

from genai_platform.service import create_service
from guard.settings import GuardSettings


def create_app(settings: GuardSettings) -> FastAPI:
    return create_service(settings, title="Guard", description=__doc__)
