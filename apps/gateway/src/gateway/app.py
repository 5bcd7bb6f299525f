"""The single entry point: API keys, routing through Dapr, the OpenAI-compatible front door."""

from fastapi import FastAPI
from genai_platform.service import create_service

from gateway.settings import GatewaySettings


def create_app(settings: GatewaySettings) -> FastAPI:
    return create_service(settings, title="API gateway", description=__doc__)
