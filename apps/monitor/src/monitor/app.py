"""One view of the system: recent events on every topic, and dead letters."""

from dataclasses import asdict

from fastapi import APIRouter, FastAPI, Query, Request

from genai_platform.events import CloudEvent, Delivery, Topic
from genai_platform.idempotency import SeenEvents
from genai_platform.service import create_service
from genai_platform.subscriptions import Subscriptions
from monitor import routes
from monitor.dead_letters import export_gauge
from monitor.events import EventLog, SeenEvent
from monitor.settings import MonitorSettings

WATCHED_TOPICS = [topic for topic in Topic if topic is not Topic.DEAD_LETTER]

subscriptions = Subscriptions()
events = APIRouter(prefix="/v1", tags=["events"])


def _log_seen(request: Request) -> SeenEvents:
    return request.app.state.event_log.seen


def on_event(request: Request, event: CloudEvent, data: object) -> Delivery:
    """Record one event of any topic, its data as sent (no payload model: any topic, any shape)."""
    return request.app.state.event_log.receive(event)


def on_dead_letter(request: Request, event: CloudEvent, data: object) -> Delivery:
    """Record one dead letter (idempotent by itself: a letter already listed is not listed again)."""
    return request.app.state.event_log.receive_dead_letter(event)


# Generated, not declared in YAML: the monitor watches every topic the platform defines, and a
# topic added to `Topic` is watched with no second list to keep in step.
for _topic in WATCHED_TOPICS:
    subscriptions.subscribe(_topic, route=f"/events/{_topic}", dead_letter_topic=Topic.DEAD_LETTER, seen=_log_seen)(
        on_event
    )
subscriptions.subscribe(Topic.DEAD_LETTER, route="/dead-letters", seen=None)(on_dead_letter)


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
        routers=[subscriptions.router, events, routes.system, routes.webhooks],
        lifespan=routes.stores_lifespan,
        open_prefixes=(routes.WEBHOOK_PREFIX,),
    )
    app.state.event_log = EventLog(settings.recent_events)
    export_gauge(app.state.event_log)
    return app
