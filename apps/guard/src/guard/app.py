"""Input and output rails: injection, PII, secrets, blocklists, exfiltration, JSON-schema checks."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.service import create_service
from guard.chain import Guard
from guard.policy import load_policy
from guard.routes import router
from guard.settings import GuardSettings


def create_app(settings: GuardSettings) -> FastAPI:
    """The guard app: its lifespan loads and validates the policy (a bad policy file stops the start)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Read and validated once: a broken policy file stops the start instead of weakening checks.
        app.state.guard = Guard(load_policy(settings.policy_path))
        yield

    return create_service(settings, title="Guard", description=__doc__, routers=[router], lifespan=lifespan)
