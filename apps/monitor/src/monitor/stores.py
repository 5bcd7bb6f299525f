"""Clients of the stores the monitor reads: Prometheus and Alertmanager (metrics and alerts),
VictoriaLogs (log lines) and Zipkin (spans). Each one reached on loopback over HTTP; any of them
may be down, which its client reports as `StoreUnavailable` naming the store, never as a 5xx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

PROMETHEUS = "prometheus"
ALERTMANAGER = "alertmanager"
VICTORIALOGS = "victorialogs"
ZIPKIN = "zipkin"


class StoreUnavailable(Exception):
    """A store did not answer, or answered with an error; `store` names it."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"{store}: {reason}")
        self.store = store
        self.reason = reason


class QueryRefused(Exception):
    """A store refused a query as malformed (HTTP 400/422): the caller's input, not an outage."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant query: its labels and value (NaN stays NaN)."""

    labels: dict[str, str]
    value: float


async def _get(client: httpx.AsyncClient, store: str, url: str, params: Any = None) -> httpx.Response:
    try:
        response = await client.get(url, params=params)
    except httpx.HTTPError as error:
        raise StoreUnavailable(store, type(error).__name__) from error
    if response.status_code in (400, 422):
        raise QueryRefused(response.text[:300])
    if response.status_code >= 300 and response.status_code != 404:
        raise StoreUnavailable(store, f"HTTP {response.status_code}")
    return response


class Prometheus:
    """Prometheus' HTTP API (https://prometheus.io/docs/prometheus/latest/querying/api/)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")

    async def query(self, promql: str) -> list[Sample]:
        """Evaluate an instant query; a vector's samples (a scalar becomes one unlabelled sample)."""
        response = await _get(self.client, PROMETHEUS, f"{self.url}/api/v1/query", {"query": promql})
        data = response.json().get("data", {})
        if data.get("resultType") == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(item["metric"], float(item["value"][1])) for item in data.get("result", [])]

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query's matrix: `[{"metric": {...}, "values": [[unix_seconds, "value"], ...]}]`."""
        params = {"query": promql, "start": start, "end": end, "step": step}
        response = await _get(self.client, PROMETHEUS, f"{self.url}/api/v1/query_range", params)
        return response.json().get("data", {}).get("result", [])

    async def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, with their health (`up`, `down`, `unknown`)."""
        response = await _get(self.client, PROMETHEUS, f"{self.url}/api/v1/targets", {"state": "active"})
        return response.json()["data"]["activeTargets"]


class Alertmanager:
    """Alertmanager's API v2: the alerts it holds (firing and not silenced or inhibited)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")

    async def active_alerts(self) -> list[dict[str, Any]]:
        params = {"active": "true", "silenced": "false", "inhibited": "false"}
        response = await _get(self.client, ALERTMANAGER, f"{self.url}/api/v2/alerts", params)
        return response.json()


class VictoriaLogs:
    """VictoriaLogs' LogsQL query API (https://docs.victoriametrics.com/victorialogs/querying/)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")

    async def query(self, logsql: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Run a LogsQL query; its rows (one JSON object per line of the answer)."""
        params: dict[str, Any] = {"query": logsql}
        if limit is not None:
            params["limit"] = limit
        response = await _get(self.client, VICTORIALOGS, f"{self.url}/select/logsql/query", params)
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]


class Zipkin:
    """Zipkin's API v2 (https://zipkin.io/zipkin-api/)."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")

    async def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans of one trace; empty when Zipkin does not know it."""
        response = await _get(self.client, ZIPKIN, f"{self.url}/api/v2/trace/{trace_id}")
        return [] if response.status_code == 404 else response.json()


@dataclass
class Stores:
    """The four stores, sharing one HTTP client (opened and closed by the app's lifespan)."""

    prometheus: Prometheus
    alertmanager: Alertmanager
    logs: VictoriaLogs
    zipkin: Zipkin

    @classmethod
    def connect(
        cls, client: httpx.AsyncClient, *, prometheus: str, alertmanager: str, logs: str, zipkin: str
    ) -> Stores:
        return cls(
            Prometheus(client, prometheus),
            Alertmanager(client, alertmanager),
            VictoriaLogs(client, logs),
            Zipkin(client, zipkin),
        )
