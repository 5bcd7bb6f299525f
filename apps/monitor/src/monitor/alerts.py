"""Alertmanager's webhook, turned into `alert.fired` / `alert.resolved` CloudEvents on `pubsub`.

Alertmanager (monitoring/rules -> Prometheus -> Alertmanager) posts each group of alerts here
(webhook payload version 4: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).
It re-sends a group on every `group_interval` while it changes and on `repeat_interval` while it
lasts, so each event's CloudEvent id is derived from the alert's fingerprint, start and status:
a re-sent alert is the same event, and subscribers (idempotent on the id) see it once.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from genai_platform.dapr import Sidecar
from genai_platform.events import AlertFired, AlertResolved, Topic

log = logging.getLogger(__name__)


class WebhookAlert(BaseModel):
    """One alert of an Alertmanager webhook call."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(None, alias="endsAt")
    generator_url: str | None = Field(None, alias="generatorURL")
    fingerprint: str


class Webhook(BaseModel):
    """The body Alertmanager posts (version 4)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: str
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[WebhookAlert]
    group_key: str = Field("", alias="groupKey")


class WebhookAnswer(BaseModel):
    published: int = Field(description="Events published: one per alert in the call.")


def event_id(alert: WebhookAlert) -> str:
    """The CloudEvent id of an alert's firing or resolution: the same for every re-send."""
    key = f"{alert.fingerprint}|{alert.starts_at.isoformat()}|{alert.status}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def to_payload(alert: WebhookAlert) -> AlertFired | AlertResolved:
    """The payload announcing one alert's state: AlertResolved once it is resolved, else AlertFired."""
    common: dict[str, Any] = {
        "name": alert.labels.get("alertname", ""),
        "fingerprint": alert.fingerprint,
        "severity": alert.labels.get("severity"),
        "app_id": alert.labels.get("app_id"),
        "summary": alert.annotations.get("summary", alert.labels.get("alertname", "")),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at,
        "generator_url": alert.generator_url,
    }
    if alert.status == "resolved":
        return AlertResolved(**common, ends_at=alert.ends_at or alert.starts_at)
    return AlertFired(**common)


async def publish_alerts(sidecar: Sidecar, webhook: Webhook) -> int:
    """Publish one event per alert through the sidecar; DaprError propagates, so Alertmanager,
    answered 5xx, sends the group again."""
    for alert in webhook.alerts:
        payload = to_payload(alert)
        data = payload.model_dump(mode="json")
        metadata = {"cloudevent.id": event_id(alert)}
        if isinstance(payload, AlertResolved):
            await sidecar.publish(Topic.ALERT_RESOLVED, data, metadata=metadata)
        else:
            await sidecar.publish(Topic.ALERT_FIRED, data, metadata=metadata)
        log.info(
            "alert published", extra={"status": alert.status, "alert": payload.name, "fingerprint": alert.fingerprint}
        )
    return len(webhook.alerts)
