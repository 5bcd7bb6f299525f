"""One view of the system: recent events on every topic, and dead letters."""

from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Query, Request

from genai_platform.events import CloudEvent, DeliveryAnswer, Topic
from genai_platform.service import SettingsDep, create_service
from monitor import routes
from monitor.dead_letters import export_gauge
from monitor.events import EventLog, SeenEvent
from monitor.settings import MonitorSettings

WATCHED_TOPICS = [topic for topic in Topic if topic is not Topic.DEAD_LETTER]

subscriptions = APIRouter(tags=["dapr"])
events = APIRouter(prefix="/v1", tags=["events"])


@subscriptions.get("/dapr/subscribe", include_in_schema=False)
async def dapr_subscriptions(settings: SettingsDep) -> list[dict]:
    # Generated, not declared in YAML: the monitor watches every topic the platform defines,
    # and a topic added to `Topic` is watched with no second list to keep in step.
    watched = [
        {
            "pubsubname": settings.pubsub_name,
            "topic": str(topic),
            "route": f"/events/{topic}",
            "deadLetterTopic": str(Topic.DEAD_LETTER),
        }
        for topic in WATCHED_TOPICS
    ]
    dead = {"pubsubname": settings.pubsub_name, "topic": str(Topic.DEAD_LETTER), "route": "/dead-letters"}
    return [*watched, dead]


@subscriptions.post("/events/{topic}", include_in_schema=False)
async def on_event(topic: str, event: CloudEvent, request: Request) -> DeliveryAnswer:
    return DeliveryAnswer(status=request.app.state.event_log.receive(event))


@subscriptions.post("/dead-letters", include_in_schema=False)
async def on_dead_letter(event: CloudEvent, request: Request) -> DeliveryAnswer:
    return DeliveryAnswer(status=request.app.state.event_log.receive_dead_letter(event))


@events.get(
    "/events", summary="Recent events, newest first", response_model=None, responses={200: {"model": list[SeenEvent]}}
)
async def recent_events(
    request: Request, topic: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> list[dict]:
    log: EventLog = request.app.state.event_log
    chosen = [e for e in reversed(log.recent) if topic is None or e.topic == topic]
    return [asdict(e) for e in chosen[:limit]]


@events.get(
    "/dead-letters",
    summary="Messages whose retries were spent, newest first",
    response_model=None,
    responses={200: {"model": list[SeenEvent]}},
)
async def dead_letters(request: Request, limit: int = Query(100, ge=1, le=1000)) -> list[dict]:
    log: EventLog = request.app.state.event_log
    return [asdict(e) for e in list(reversed(log.dead_letters))[:limit]]


def create_app(settings: MonitorSettings) -> FastAPI:
    app = create_service(
        settings,
        title="Monitor",
        description=__doc__,
        routers=[subscriptions, events, routes.system, routes.webhooks],
        lifespan=routes.stores_lifespan,
        open_prefixes=(routes.WEBHOOK_PREFIX,),
    )
    app.state.event_log = EventLog(settings.recent_events)
    export_gauge(app.state.event_log)
    return app
