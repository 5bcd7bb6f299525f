"""Dashboards as code: the platform's PromQL, one definition per panel.

The same definitions feed the monitor's overview (GET /v1/system/overview), its dashboards API
(GET /v1/system/dashboards, drawn by the ui app's System page) and the Grafana dashboards shipped
in monitoring/grafana/ for clusters that run Grafana (`python -m monitor.dashboards` writes them;
tests/unit/test_monitor_dashboards.py holds the files to these definitions).

Metric names: OpenTelemetry's GenAI semantic conventions where one exists
(`gen_ai.server.time_to_first_token` -> `gen_ai_server_time_to_first_token_seconds`), Prometheus
naming otherwise; daprd's are Dapr's own (`dapr_*`, latencies in milliseconds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

# The window of every rate and quantile: four scrapes at the default 15 s interval, and then some.
WINDOW = "5m"

Unit = Literal["s", "ms", "reqps", "percentunit", "short", "tokens/s", "events/s"]
# Grafana's unit ids for ours.
_GRAFANA_UNITS = {"tokens/s": "short", "events/s": "short"}


class Panel(BaseModel):
    """One chart: a PromQL expression and how to read it."""

    id: str = Field(description="Stable id, e.g. `request_rate`.")
    title: str
    expr: str = Field(description="PromQL, evaluated by Prometheus (instant or range query).")
    unit: Unit
    legend: str = Field("", description="Grafana legend format, e.g. `{{app_id}}`.")
    description: str = ""


class Dashboard(BaseModel):
    uid: str = Field(description="Stable id, e.g. `overview`; also the Grafana dashboard uid suffix.")
    title: str
    description: str
    panels: list[Panel]

    def panel(self, panel_id: str) -> Panel:
        return next(panel for panel in self.panels if panel.id == panel_id)


def _quantile(q: float, metric: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket[{WINDOW}])))"


OVERVIEW = Dashboard(
    uid="overview",
    title="Platform overview",
    description="Every app and its sidecar: up, requests, errors, latency.",
    panels=[
        Panel(
            id="up",
            title="Up (1) or down (0), app and sidecar",
            expr='up{job=~"app|daprd"}',
            unit="short",
            legend="{{app_id}} {{job}}",
        ),
        Panel(
            id="request_rate",
            title="Requests per second",
            expr=f"sum by (app_id) (rate(http_requests_total[{WINDOW}]))",
            unit="reqps",
            legend="{{app_id}}",
        ),
        Panel(
            id="error_ratio",
            title="Server errors (5xx) over all requests",
            expr=(
                f'sum by (app_id) (rate(http_requests_total{{status=~"5.."}}[{WINDOW}]))'
                f" / sum by (app_id) (rate(http_requests_total[{WINDOW}]))"
            ),
            unit="percentunit",
            legend="{{app_id}}",
        ),
        Panel(
            id="latency_p50",
            title="Latency p50",
            expr=_quantile(0.5, "http_request_duration_seconds", "app_id, le"),
            unit="s",
            legend="{{app_id}}",
        ),
        Panel(
            id="latency_p95",
            title="Latency p95",
            expr=_quantile(0.95, "http_request_duration_seconds", "app_id, le"),
            unit="s",
            legend="{{app_id}}",
        ),
    ],
)

INFERENCE = Dashboard(
    uid="inference",
    title="Inference",
    description="LLM serving: time to first token, time per output token, tokens/s, queue and batch.",
    panels=[
        Panel(
            id="tokens_per_second",
            title="Generated tokens per second",
            expr=f"sum(rate(inference_generated_tokens_total[{WINDOW}]))",
            unit="tokens/s",
        ),
        Panel(
            id="ttft_p50",
            title="Time to first token p50",
            expr=_quantile(0.5, "gen_ai_server_time_to_first_token_seconds", "le"),
            unit="s",
            description="OpenTelemetry GenAI gen_ai.server.time_to_first_token.",
        ),
        Panel(
            id="ttft_p95",
            title="Time to first token p95",
            expr=_quantile(0.95, "gen_ai_server_time_to_first_token_seconds", "le"),
            unit="s",
        ),
        Panel(
            id="tpot_p50",
            title="Time per output token p50",
            expr=_quantile(0.5, "gen_ai_server_time_per_output_token_seconds", "le"),
            unit="s",
            description="OpenTelemetry GenAI gen_ai.server.time_per_output_token.",
        ),
        Panel(
            id="queue_depth", title="Requests waiting for a batch slot", expr="sum(inference_queue_depth)", unit="short"
        ),
        Panel(id="batch_size", title="Sequences in the running batch", expr="sum(inference_batch_size)", unit="short"),
    ],
)

PUBSUB = Dashboard(
    uid="pubsub",
    title="Pub/sub",
    description="Per topic: published and delivered events, redeliveries, dead letters waiting.",
    panels=[
        Panel(
            id="published",
            title="Published per second",
            expr=f'sum by (topic) (rate(dapr_component_pubsub_egress_count{{success="true"}}[{WINDOW}]))',
            unit="events/s",
            legend="{{topic}}",
        ),
        Panel(
            id="delivered",
            title="Delivered per second (subscriber answered SUCCESS)",
            expr=f'sum by (topic) (rate(dapr_component_pubsub_ingress_count{{process_status="success"}}[{WINDOW}]))',
            unit="events/s",
            legend="{{topic}}",
        ),
        Panel(
            id="redeliveries",
            title=f"Redeliveries (subscriber answered RETRY) over {WINDOW}",
            expr=f'sum by (topic) (increase(dapr_component_pubsub_ingress_count{{process_status="retry"}}[{WINDOW}]))',
            unit="short",
            legend="{{topic}}",
        ),
        Panel(
            id="dead_letters",
            title="Dead letters waiting for replay or discard",
            expr="sum by (topic) (monitor_dead_letters)",
            unit="short",
            legend="{{topic}}",
        ),
    ],
)

DAPR = Dashboard(
    uid="dapr",
    title="Dapr sidecars",
    description="Sidecar HTTP latency and resiliency (circuit breakers, retries).",
    panels=[
        Panel(
            id="sidecar_request_rate",
            title="Sidecar HTTP requests per second",
            expr=f"sum by (app_id) (rate(dapr_http_server_request_count[{WINDOW}]))",
            unit="reqps",
            legend="{{app_id}}",
        ),
        Panel(
            id="sidecar_latency_p95",
            title="Sidecar HTTP latency p95",
            expr=_quantile(0.95, "dapr_http_server_latency", "app_id, le"),
            unit="ms",
            legend="{{app_id}}",
        ),
        Panel(
            id="circuit_breakers_open",
            title="Circuit breakers open",
            expr='max by (app_id, name, target) (dapr_resiliency_cb_state{status="open"})',
            unit="short",
            legend="{{app_id}} {{target}}",
        ),
        Panel(
            id="resiliency_activations",
            title=f"Resiliency policies activated over {WINDOW}",
            expr=f"sum by (app_id, policy) (increase(dapr_resiliency_activations_total[{WINDOW}]))",
            unit="short",
            legend="{{app_id}} {{policy}}",
        ),
    ],
)

DASHBOARDS: dict[str, Dashboard] = {d.uid: d for d in (OVERVIEW, INFERENCE, PUBSUB, DAPR)}


def grafana_dashboard(dashboard: Dashboard) -> dict[str, Any]:
    """A Grafana dashboard JSON model (schemaVersion 39) of time-series panels, two per row,
    on a `datasource` variable of type prometheus."""
    panels = []
    for index, panel in enumerate(dashboard.panels):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "description": panel.description,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": _GRAFANA_UNITS.get(panel.unit, panel.unit)}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": {"type": "prometheus", "uid": "${datasource}"},
                        "expr": panel.expr,
                        "legendFormat": panel.legend,
                    }
                ],
            }
        )
    return {
        "uid": f"genai-{dashboard.uid}",
        "title": f"GenAI platform: {dashboard.title}",
        "description": dashboard.description,
        "tags": ["genai-platform"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def write_grafana(folder: Path) -> list[Path]:
    """Write one Grafana JSON file per dashboard into `folder`; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS.values():
        path = folder / f"{dashboard.uid}.json"
        path.write_text(json.dumps(grafana_dashboard(dashboard), indent=2) + "\n")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the Grafana dashboards of monitor.dashboards.")
    parser.add_argument("--out", type=Path, default=Path("monitoring/grafana"))
    write_grafana(parser.parse_args().out)


if __name__ == "__main__":
    main()
