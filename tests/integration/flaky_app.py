"""A test double for an app that fails transiently: 503 for its first calls, then 200.

It is built with the platform's own app factory, so it checks the app token like any service.
"""

from collections import Counter

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse

from genai_platform.service import create_service, run
from genai_platform.settings import ServiceSettings

calls: Counter[str] = Counter()
router = APIRouter()


@router.post("/flaky/{key}/{failures}")
async def flaky(key: str, failures: int) -> JSONResponse:
    calls[key] += 1
    if calls[key] <= failures:
        return JSONResponse({"attempt": calls[key]}, status_code=503)
    return JSONResponse({"attempt": calls[key]})


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_service(settings, title="flaky", routers=[router])


if __name__ == "__main__":
    run(ServiceSettings, create_app)
