"""A test double for a subscriber whose handler takes a while: it subscribes to SUBSCRIBER_TOPIC,
takes SUBSCRIBER_DELAY seconds per message, and lists what it has handled at GET /received
(marker -> times handled), so a test can see messages in flight, finished and redelivered.

It is built with the platform's own app factory, so it checks the app token like any service.
"""

import asyncio
import os
from collections import Counter

from fastapi import APIRouter, FastAPI, Request

from genai_platform.service import create_service, run
from genai_platform.settings import ServiceSettings

TOPIC = os.environ.get("SUBSCRIBER_TOPIC", "faults.inflight")
DELAY = float(os.environ.get("SUBSCRIBER_DELAY", "0.5"))
handled: Counter[str] = Counter()
router = APIRouter()


@router.get("/dapr/subscribe")
async def subscriptions() -> list[dict]:
    return [{"pubsubname": "pubsub", "topic": TOPIC, "route": "/events"}]


@router.post("/events")
async def event(request: Request) -> dict:
    marker = (await request.json())["data"]["marker"]
    await asyncio.sleep(DELAY)
    handled[marker] += 1
    return {"status": "SUCCESS"}


@router.get("/received")
async def received() -> dict[str, int]:
    return dict(handled)


def create_app(settings: ServiceSettings) -> FastAPI:
    return create_service(settings, title="slow subscriber", routers=[router])


if __name__ == "__main__":
    run(ServiceSettings, create_app)
