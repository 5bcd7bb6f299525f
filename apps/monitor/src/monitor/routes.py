"""The monitor's API: overview, dashboards, logs, traces, dead letters, and Alertmanager's webhook.

Thin routes over monitor.overview, .dashboards, .logs, .traces, .dead_letters and .alerts; each
maps its domain's errors to problem+json here, once. Every public route is relayed by the gateway
(its PUBLIC_ROUTES) with the API key.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field

from genai_platform.dapr import DaprError
from genai_platform.errors import Problem
from genai_platform.requests import current_request_id
from genai_platform.security import tokens_match
from genai_platform.service import SidecarDep
from monitor import dead_letters
from monitor.alerts import Webhook, WebhookAnswer, publish_alerts
from monitor.dashboards import DASHBOARDS, Dashboard
from monitor.logs import InvalidQuery, LogPage, parse_query, parse_time, search
from monitor.overview import AllStoresMissing, Overview, overview
from monitor.settings import MonitorSettings
from monitor.stores import PROMETHEUS, QueryRefused, Stores, StoreUnavailable
from monitor.traces import TRACE_ID, StoresMissing, TraceNotFound, TraceView, trace_view

system = APIRouter(prefix="/v1", tags=["system"])
webhooks = APIRouter(tags=["alerts"])
# Served to Alertmanager on loopback (it cannot send Dapr's token header); checked by bearer token.
WEBHOOK_PREFIX = "/alerts/"


@asynccontextmanager
async def stores_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the stores' HTTP client for the app's life."""
    settings: MonitorSettings = app.state.settings
    async with httpx.AsyncClient(timeout=settings.store_timeout_seconds) as client:
        app.state.stores = Stores.connect(
            client,
            prometheus=settings.prometheus_url,
            alertmanager=settings.alertmanager_url,
            logs=settings.victorialogs_url,
            zipkin=settings.zipkin_url,
        )
        yield


def get_stores(request: Request) -> Stores:
    return request.app.state.stores


def invalid(field: str, message: str) -> Problem:
    """422 naming one query parameter, in the shape of FastAPI's validation problems."""
    return Problem(
        422,
        f"Query parameter `{field}`: {message}.",
        title="Invalid request",
        errors=[{"location": f"query.{field}", "message": message}],
    )


def only_params(*names: str) -> Callable[[Request], None]:
    """A dependency refusing query parameters the route does not know (a typo is not ignored)."""
    allowed = set(names)

    def check(request: Request) -> None:
        for name in request.query_params:
            if name not in allowed:
                raise invalid(name, f"unknown parameter; expected one of {', '.join(sorted(allowed))}")

    return check


def stores_missing(stores: list[str]) -> Problem:
    return Problem(
        503,
        f"No store answered: {', '.join(stores)}.",
        title="Stores unavailable",
        headers={"Retry-After": "5"},
        missing=stores,
    )


@system.get(
    "/system/overview",
    response_model=Overview,
    summary="Every app, inference, pub/sub and the active alerts, from the metrics and log stores",
    dependencies=[Depends(only_params())],
    responses={503: {"description": "Prometheus, Alertmanager and VictoriaLogs all missing (named)."}},
)
async def system_overview(request: Request) -> Overview:
    try:
        return await overview(get_stores(request))
    except AllStoresMissing as error:
        raise stores_missing(error.stores) from None


@system.get(
    "/system/dashboards",
    response_model=list[Dashboard],
    summary="The dashboards' definitions (PromQL per panel)",
    dependencies=[Depends(only_params())],
)
async def list_dashboards() -> list[Dashboard]:
    return list(DASHBOARDS.values())


class Point(BaseModel):
    time: datetime
    value: float | None = Field(description="Null where Prometheus has no number (NaN).")


class Series(BaseModel):
    labels: dict[str, str]
    points: list[Point]


class PanelData(BaseModel):
    id: str
    title: str
    unit: str
    series: list[Series]


class DashboardData(BaseModel):
    """A dashboard's panels evaluated over a time range, ready to draw."""

    uid: str
    title: str
    start: datetime
    end: datetime
    step_seconds: float
    panels: list[PanelData]


# About 120 points per series: enough for a chart as wide as a page.
_POINTS = 120


@system.get(
    "/system/dashboards/{uid}/data",
    response_model=DashboardData,
    summary="A dashboard's series over the last `range` (e.g. 15m, 1h, 1d)",
    dependencies=[Depends(only_params("range"))],
    responses={404: {"description": "No such dashboard."}, 503: {"description": "Prometheus is missing."}},
)
async def dashboard_data(uid: str, request: Request, range_: str = Query("1h", alias="range")) -> DashboardData:
    dashboard = DASHBOARDS.get(uid)
    if dashboard is None:
        raise Problem(404, f"No dashboard `{uid}`; see GET /v1/system/dashboards.")
    end = datetime.now(UTC)
    try:
        start = parse_time(range_, "range", end)
    except InvalidQuery as error:
        raise invalid(error.field, error.message) from None
    if not timedelta(minutes=1) <= end - start <= timedelta(days=7):
        raise invalid("range", "expected a duration from 1m to 7d")
    step = max(5.0, (end - start).total_seconds() / _POINTS)
    prometheus = get_stores(request).prometheus
    panels = []
    try:
        for panel in dashboard.panels:
            matrix = await prometheus.query_range(panel.expr, start.timestamp(), end.timestamp(), step)
            series = [
                Series(
                    labels=item["metric"],
                    points=[
                        Point(time=datetime.fromtimestamp(t, UTC), value=None if math.isnan(float(v)) else float(v))
                        for t, v in item["values"]
                    ],
                )
                for item in matrix
            ]
            panels.append(PanelData(id=panel.id, title=panel.title, unit=panel.unit, series=series))
    except StoreUnavailable:
        raise stores_missing([PROMETHEUS]) from None
    return DashboardData(uid=uid, title=dashboard.title, start=start, end=end, step_seconds=step, panels=panels)


LOG_PARAMS = ("app", "source", "level", "since", "until", "request_id", "trace_id", "q", "limit", "offset")


@system.get(
    "/logs",
    response_model=LogPage,
    summary="Log lines of every app and sidecar, newest first, paged",
    description=(
        "Filters: `app`, `source` (app | daprd), `level` (the least severity shown: debug, info, warning, "
        "error, critical, fatal), `since` and `until` (RFC 3339 time or a duration back from now such as "
        "`15m`; default: the last hour), `request_id`, `trace_id`, `q` (a phrase in the message), "
        "`limit` (1-1000, default 100), `offset` (from `next_offset`). Lines that are not JSON are kept "
        "as text, with no level."
    ),
    dependencies=[Depends(only_params(*LOG_PARAMS))],
    responses={
        422: {"description": "An unknown or malformed parameter (named)."},
        503: {"description": "VictoriaLogs is missing."},
    },
)
async def logs(request: Request) -> LogPage:
    try:
        query = parse_query(dict(request.query_params))
    except InvalidQuery as error:
        raise invalid(error.field, error.message) from None
    try:
        return await search(get_stores(request).logs, query)
    except StoreUnavailable as error:
        raise stores_missing([error.store]) from None
    except QueryRefused:
        raise invalid("q", "the log store could not read this search") from None


@system.get(
    "/traces/{trace_id}",
    response_model=TraceView,
    summary="One request end to end: its Zipkin spans and every log line of it, app and sidecar",
    dependencies=[Depends(only_params())],
    responses={404: {"description": "Neither Zipkin nor the log store knows the trace."}},
)
async def trace(trace_id: str, request: Request) -> TraceView:
    trace_id = trace_id.lower()
    # W3C Trace Context: an id of all zeros is invalid (and Zipkin refuses to look it up).
    if not TRACE_ID.match(trace_id) or not trace_id.strip("0"):
        raise Problem(
            422,
            "`trace_id` must be 16 or 32 hexadecimal digits, not all zeros.",
            title="Invalid request",
            errors=[{"location": "path.trace_id", "message": "expected 16 or 32 hexadecimal digits, not all zeros"}],
        )
    stores = get_stores(request)
    try:
        return await trace_view(stores.zipkin, stores.logs, trace_id)
    except TraceNotFound:
        raise Problem(404, f"No span or log line of trace {trace_id} was found.") from None
    except StoresMissing as error:
        raise stores_missing(error.stores) from None


@system.get(
    "/dead-letters/{letter_id}",
    response_model=dead_letters.DeadLetter,
    summary="One dead letter",
    dependencies=[Depends(only_params())],
    responses={404: {"description": "No dead letter has this id."}},
)
async def get_dead_letter(letter_id: str, request: Request) -> dead_letters.DeadLetter:
    try:
        return dead_letters.get_letter(request.app.state.event_log, letter_id)
    except dead_letters.DeadLetterMissing:
        raise Problem(404, f"No dead letter {letter_id}.") from None


@system.post(
    "/dead-letters/{letter_id}/replay",
    response_model=dead_letters.DeadLetterAction,
    summary="Publish a dead letter on its original topic again (audit-logged)",
    dependencies=[Depends(only_params())],
    responses={
        404: {"description": "No dead letter has this id."},
        409: {"description": "Its topic cannot be replayed to."},
    },
)
async def replay_dead_letter(letter_id: str, request: Request, sidecar: SidecarDep) -> dead_letters.DeadLetterAction:
    try:
        return await dead_letters.replay(request.app.state.event_log, letter_id, sidecar, current_request_id.get())
    except dead_letters.DeadLetterMissing:
        raise Problem(404, f"No dead letter {letter_id}.") from None
    except dead_letters.NotReplayable as error:
        raise Problem(409, f"Dead letter {letter_id} names no topic of the platform ({error}).") from None


@system.delete(
    "/dead-letters/{letter_id}",
    response_model=dead_letters.DeadLetterAction,
    summary="Discard a dead letter (audit-logged)",
    dependencies=[Depends(only_params())],
    responses={404: {"description": "No dead letter has this id."}},
)
async def discard_dead_letter(letter_id: str, request: Request) -> dead_letters.DeadLetterAction:
    try:
        return dead_letters.discard(request.app.state.event_log, letter_id, current_request_id.get())
    except dead_letters.DeadLetterMissing:
        raise Problem(404, f"No dead letter {letter_id}.") from None


@webhooks.post(f"{WEBHOOK_PREFIX}webhook", response_model=WebhookAnswer, include_in_schema=False)
async def alertmanager_webhook(webhook: Webhook, request: Request, sidecar: SidecarDep) -> WebhookAnswer:
    settings: MonitorSettings = request.app.state.settings
    if settings.app_api_token is not None:
        given = request.headers.get("authorization", "")
        token = given.removeprefix("Bearer ") if given.startswith("Bearer ") else None
        if not tokens_match(token, settings.app_api_token.get_secret_value()):
            raise Problem(401, "Alertmanager's webhook calls carry the monitor's token as a bearer token.")
    try:
        published = await publish_alerts(sidecar, webhook)
    except DaprError:
        # Alertmanager sends the group again on a 5xx.
        raise Problem(
            503, "The pub/sub component did not take the alert events.", headers={"Retry-After": "5"}
        ) from None
    return WebhookAnswer(published=published)
