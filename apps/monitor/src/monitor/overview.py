"""The system overview: every app, inference, pub/sub and the active alerts, read from the stores.

Numbers come from Prometheus (the dashboards' own PromQL, monitor/dashboards.py), active alerts
from Alertmanager, error lines from VictoriaLogs, each asked at once. A store that does not answer
leaves its fields null and is named in `missing`; only when every store is missing is there
nothing to show (the route answers 503 naming them).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from monitor.dashboards import INFERENCE, OVERVIEW, PUBSUB, WINDOW
from monitor.logs import UNPACK
from monitor.stores import ALERTMANAGER, PROMETHEUS, VICTORIALOGS, Sample, Stores, StoreUnavailable

T = TypeVar("T")


class AppStatus(BaseModel):
    """One app and its sidecar, over the last `window` (null: no data, or the metrics store is missing)."""

    app_id: str
    ready: bool | None = Field(None, description="Both the app's and its sidecar's last scrape succeeded.")
    app_up: bool | None = None
    sidecar_up: bool | None = None
    requests_per_second: float | None = None
    error_ratio: float | None = Field(None, description="5xx answers over all answers, 0-1.")
    latency_p50_seconds: float | None = None
    latency_p95_seconds: float | None = None
    error_log_lines: int | None = Field(None, description="Lines at level error or worse in the window (log store).")


class InferenceStatus(BaseModel):
    tokens_per_second: float | None = None
    time_to_first_token_p50_seconds: float | None = None
    time_to_first_token_p95_seconds: float | None = None
    queue_depth: float | None = None
    batch_size: float | None = None


class TopicStatus(BaseModel):
    topic: str
    published_per_second: float | None = None
    delivered_per_second: float | None = None
    redeliveries: float | None = Field(None, description="Deliveries answered RETRY within the window.")
    dead_letters: float | None = Field(None, description="Dead letters of this topic waiting for replay or discard.")


class ActiveAlert(BaseModel):
    name: str
    severity: str | None = None
    app_id: str | None = None
    summary: str | None = None
    starts_at: datetime
    labels: dict[str, str]


class Overview(BaseModel):
    """GET /v1/system/overview."""

    generated_at: datetime
    window: str = Field(description="The window of every rate and quantile, e.g. `5m`.")
    apps: list[AppStatus]
    inference: InferenceStatus
    pubsub: list[TopicStatus]
    alerts: list[ActiveAlert] | None = Field(description="Firing alerts; null when Alertmanager is missing.")
    missing: list[str] = Field(description="Stores that did not answer: prometheus, alertmanager, victorialogs.")


class AllStoresMissing(Exception):
    def __init__(self, stores: list[str]) -> None:
        super().__init__(", ".join(stores))
        self.stores = stores


def _number(value: float) -> float | None:
    # Quantiles of no traffic are NaN, and JSON has no NaN.
    return None if math.isnan(value) or math.isinf(value) else value


def _by(samples: list[Sample], label: str) -> dict[str, float | None]:
    return {s.labels.get(label, ""): _number(s.value) for s in samples}


def _single(samples: list[Sample]) -> float | None:
    return _number(samples[0].value) if samples else None


async def _optional(call: Awaitable[T]) -> T | None:
    try:
        return await call
    except StoreUnavailable:
        return None


async def _metrics(stores: Stores) -> dict[str, list[Sample]] | None:
    """Every panel the overview shows, by panel id; None when Prometheus is missing."""
    panels = [*OVERVIEW.panels, *INFERENCE.panels, *PUBSUB.panels]
    try:
        results = await asyncio.gather(*(stores.prometheus.query(panel.expr) for panel in panels))
    except StoreUnavailable:
        return None
    return {panel.id: samples for panel, samples in zip(panels, results, strict=True)}


def apps_from(metrics: dict[str, list[Sample]], error_lines: dict[str, int] | None) -> list[AppStatus]:
    """One AppStatus per app that Prometheus scrapes (its `up` series name them)."""
    up: dict[str, dict[str, bool]] = {}
    for sample in metrics["up"]:
        up.setdefault(sample.labels.get("app_id", ""), {})[sample.labels.get("job", "")] = sample.value == 1
    columns = {
        name: _by(metrics[name], "app_id") for name in ("request_rate", "error_ratio", "latency_p50", "latency_p95")
    }
    apps = []
    for app_id in sorted(up):
        app_up, sidecar_up = up[app_id].get("app"), up[app_id].get("daprd")
        apps.append(
            AppStatus(
                app_id=app_id,
                ready=bool(sidecar_up) and app_up is not False,
                app_up=app_up,
                sidecar_up=sidecar_up,
                requests_per_second=columns["request_rate"].get(app_id),
                error_ratio=columns["error_ratio"].get(app_id),
                latency_p50_seconds=columns["latency_p50"].get(app_id),
                latency_p95_seconds=columns["latency_p95"].get(app_id),
                error_log_lines=None if error_lines is None else error_lines.get(app_id, 0),
            )
        )
    return apps


def topics_from(metrics: dict[str, list[Sample]]) -> list[TopicStatus]:
    columns = {name: _by(metrics[name], "topic") for name in ("published", "delivered", "redeliveries", "dead_letters")}
    topics = sorted({topic for column in columns.values() for topic in column if topic})
    return [
        TopicStatus(
            topic=topic,
            published_per_second=columns["published"].get(topic),
            delivered_per_second=columns["delivered"].get(topic),
            redeliveries=columns["redeliveries"].get(topic),
            dead_letters=columns["dead_letters"].get(topic),
        )
        for topic in topics
    ]


def alert_from(raw: dict[str, Any]) -> ActiveAlert:
    """One alert of Alertmanager's API v2 (`labels`, `annotations`, `startsAt`)."""
    labels = raw.get("labels", {})
    return ActiveAlert(
        name=labels.get("alertname", ""),
        severity=labels.get("severity"),
        app_id=labels.get("app_id"),
        summary=raw.get("annotations", {}).get("summary"),
        starts_at=raw["startsAt"],
        labels=labels,
    )


async def _error_lines(stores: Stores) -> dict[str, int]:
    # Words first (they use the store's index), then each line's own level.
    rows = await stores.logs.query(
        f"_time:{WINDOW} (error or critical or fatal) {UNPACK} "
        "| filter level:in(error, critical, fatal) | stats by (app_id) count() as lines"
    )
    return {row.get("app_id", ""): int(row["lines"]) for row in rows}


async def overview(stores: Stores, now: datetime | None = None) -> Overview:
    """Read the overview from the three stores at once.

    Raises AllStoresMissing when none of Prometheus, Alertmanager and VictoriaLogs answers.
    """
    metrics, alerts, error_lines = await asyncio.gather(
        _metrics(stores), _optional(stores.alertmanager.active_alerts()), _optional(_error_lines(stores))
    )
    missing = [
        name
        for name, answer in ((PROMETHEUS, metrics), (ALERTMANAGER, alerts), (VICTORIALOGS, error_lines))
        if answer is None
    ]
    if len(missing) == 3:
        raise AllStoresMissing(missing)
    inference = InferenceStatus()
    if metrics is not None:
        inference = InferenceStatus(
            tokens_per_second=_single(metrics["tokens_per_second"]),
            time_to_first_token_p50_seconds=_single(metrics["ttft_p50"]),
            time_to_first_token_p95_seconds=_single(metrics["ttft_p95"]),
            queue_depth=_single(metrics["queue_depth"]),
            batch_size=_single(metrics["batch_size"]),
        )
    return Overview(
        generated_at=now or datetime.now(UTC),
        window=WINDOW,
        apps=apps_from(metrics, error_lines) if metrics is not None else [],
        inference=inference,
        pubsub=topics_from(metrics) if metrics is not None else [],
        alerts=None if alerts is None else [alert_from(raw) for raw in alerts],
        missing=missing,
    )
