"""One view of the system: readiness of every app, recent events, dead letters."""

from fastapi import FastAPI
from genai_platform.service import create_service

from monitor.settings import MonitorSettings


def create_app(settings: MonitorSettings) -> FastAPI:
    return create_service(settings, title="Monitor", description=__doc__)
