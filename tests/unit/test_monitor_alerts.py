"""Alertmanager's webhook turned into alert.fired / alert.resolved payloads with stable event ids."""

from genai_platform.events import AlertFired, AlertResolved
from monitor.alerts import Webhook, event_id, to_payload

FIRING = {
    "version": "4",
    "status": "firing",
    "receiver": "monitor",
    "groupKey": '{}:{alertname="AppDown"}',
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "AppDown", "app_id": "ingestion", "job": "app", "severity": "page"},
            "annotations": {"summary": "ingestion (app) is down"},
            "startsAt": "2026-03-01T12:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
            "fingerprint": "a1b2c3",
        }
    ],
}


def resolved() -> dict:
    body = {**FIRING, "status": "resolved"}
    body["alerts"] = [{**FIRING["alerts"][0], "status": "resolved", "endsAt": "2026-03-01T12:05:00.000Z"}]
    return body


def test_a_firing_alert_becomes_alert_fired_with_its_app_and_summary() -> None:
    (alert,) = Webhook.model_validate(FIRING).alerts
    payload = to_payload(alert)
    assert type(payload) is AlertFired
    assert (payload.name, payload.app_id, payload.severity, payload.summary) == (
        "AppDown",
        "ingestion",
        "page",
        "ingestion (app) is down",
    )


def test_a_resolution_becomes_alert_resolved_with_its_end() -> None:
    (alert,) = Webhook.model_validate(resolved()).alerts
    payload = to_payload(alert)
    assert isinstance(payload, AlertResolved)
    assert payload.ends_at.isoformat() == "2026-03-01T12:05:00+00:00"


def test_a_resent_alert_keeps_its_event_id_and_its_resolution_gets_another() -> None:
    (first,) = Webhook.model_validate(FIRING).alerts
    (again,) = Webhook.model_validate(FIRING).alerts
    (end,) = Webhook.model_validate(resolved()).alerts
    assert event_id(first) == event_id(again)
    assert event_id(first) != event_id(end)
    assert len(event_id(first)) == 32
