"""The overview's and the trace view's reading of the stores' answers (pure functions)."""

import math

from monitor.overview import alert_from, apps_from, topics_from
from monitor.stores import Sample
from monitor.traces import to_span


def metrics(**series: list[Sample]) -> dict[str, list[Sample]]:
    names = ("up", "request_rate", "error_ratio", "latency_p50", "latency_p95")
    names += ("published", "delivered", "redeliveries", "dead_letters")
    return {name: series.get(name, []) for name in names}


def test_an_app_is_ready_when_it_and_its_sidecar_are_up_and_no_traffic_is_null() -> None:
    found = apps_from(
        metrics(
            up=[
                Sample({"app_id": "guard", "job": "app"}, 1),
                Sample({"app_id": "guard", "job": "daprd"}, 1),
                Sample({"app_id": "inference", "job": "app"}, 0),
                Sample({"app_id": "inference", "job": "daprd"}, 1),
            ],
            request_rate=[Sample({"app_id": "guard"}, 2.5)],
            latency_p95=[Sample({"app_id": "guard"}, math.nan)],
        ),
        {"inference": 3},
    )
    guard, inference = found
    assert (guard.app_id, guard.ready, guard.requests_per_second, guard.latency_p95_seconds) == (
        "guard",
        True,
        2.5,
        None,
    )
    assert (inference.ready, inference.app_up, inference.sidecar_up, inference.error_log_lines) == (
        False,
        False,
        True,
        3,
    )
    assert guard.error_log_lines == 0


def test_topics_gather_every_column_and_an_alert_keeps_its_labels() -> None:
    (topic,) = topics_from(
        metrics(
            published=[Sample({"topic": "chunks.indexed"}, 0.5)], dead_letters=[Sample({"topic": "chunks.indexed"}, 2)]
        )
    )
    assert (topic.topic, topic.published_per_second, topic.delivered_per_second, topic.dead_letters) == (
        "chunks.indexed",
        0.5,
        None,
        2,
    )
    alert = alert_from(
        {
            "labels": {"alertname": "AppDown", "app_id": "guard", "severity": "page"},
            "annotations": {"summary": "guard (app) is down"},
            "startsAt": "2026-03-01T12:00:00Z",
        }
    )
    assert (alert.name, alert.app_id, alert.severity, alert.summary) == (
        "AppDown",
        "guard",
        "page",
        "guard (app) is down",
    )


def test_a_zipkin_span_keeps_its_service_and_times() -> None:
    span = to_span(
        {
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "id": "b7ad6b7169203331",
            "parentId": "00f067aa0ba902b7",
            "name": "callLocal/inference/v1/chat/completions",
            "kind": "SERVER",
            "timestamp": 1772366400000000,
            "duration": 1500,
            "localEndpoint": {"serviceName": "inference"},
            "tags": {"http.status_code": "200"},
        }
    )
    assert (span.service, span.parent_id, span.duration_ms, span.start.isoformat()) == (
        "inference",
        "00f067aa0ba902b7",
        1.5,
        "2026-03-01T12:00:00+00:00",
    )
