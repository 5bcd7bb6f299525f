"""One view of a request: its Zipkin spans joined with every log line of it, app and sidecar.

App lines are matched by their `trace_id` field. daprd writes no trace id in its lines (Dapr
1.18's API log has method, code, duration and user agent only), so a sidecar's lines are those
of the apps the trace's spans name, written while the trace ran: `matched_by` tells the two
apart, and the sidecar lines may include another request's served at the same moment.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from monitor.logs import LogLine, LogQuery, lines_query, to_line
from monitor.stores import VICTORIALOGS, ZIPKIN, StoreUnavailable, VictoriaLogs, Zipkin

TRACE_ID = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{32})$")
# How far before and after the spans a sidecar line may fall: daprd writes its API line when a
# call ends, and clocks of one machine agree, so a second covers the writing.
_SLACK = timedelta(seconds=1)
# How long after a line was written vlagent may store it (it polls files every second and
# sends every second; more when the machine is busy).
_READ_DELAY = timedelta(minutes=2)
# Without spans (Zipkin down, or the trace not exported yet) app lines are looked for this far back.
_WITHOUT_SPANS = timedelta(days=1)
MAX_LINES = 2000


class Span(BaseModel):
    """One span, as Zipkin keeps it (times in UTC, durations in milliseconds)."""

    id: str
    parent_id: str | None = None
    name: str
    service: str = Field(description="The app (or its sidecar: Dapr names it by the app id) that recorded it.")
    kind: str | None = None
    remote_service: str | None = None
    start: datetime
    duration_ms: float
    tags: dict[str, str] = Field(default_factory=dict)


class TraceLogLine(LogLine):
    matched_by: Literal["trace_id", "time"] = Field(
        description="`trace_id`: the line names the trace; `time`: a sidecar line written while the trace ran."
    )


class TraceView(BaseModel):
    """A trace's spans (gateway -> guard -> features -> prompts -> inference -> guard) and log lines."""

    trace_id: str
    start: datetime | None = None
    duration_ms: float | None = None
    apps: list[str] = Field(description="Apps that recorded spans or wrote lines of this trace.")
    spans: list[Span] = Field(description="Ordered by start time.")
    logs: list[TraceLogLine] = Field(description="App and sidecar lines, ordered by time.")
    missing: list[str] = Field(default_factory=list, description="Stores that did not answer (zipkin, victorialogs).")


class TraceNotFound(Exception):
    """Neither Zipkin nor the log store knows the trace."""


class StoresMissing(Exception):
    """Every store of this view is down; `stores` names them."""

    def __init__(self, stores: list[str]) -> None:
        super().__init__(", ".join(stores))
        self.stores = stores


def to_span(raw: dict[str, Any]) -> Span:
    """A Zipkin v2 span (timestamp and duration in microseconds) as a Span."""
    return Span(
        id=raw["id"],
        parent_id=raw.get("parentId"),
        name=raw.get("name", ""),
        service=(raw.get("localEndpoint") or {}).get("serviceName", "unknown"),
        kind=raw.get("kind"),
        remote_service=(raw.get("remoteEndpoint") or {}).get("serviceName"),
        start=datetime.fromtimestamp(raw.get("timestamp", 0) / 1e6, UTC),
        duration_ms=raw.get("duration", 0) / 1000,
        tags=raw.get("tags", {}),
    )


async def _spans(zipkin: Zipkin, trace_id: str) -> list[Span] | None:
    try:
        return sorted((to_span(raw) for raw in await zipkin.trace(trace_id)), key=lambda span: span.start)
    except StoreUnavailable:
        return None


async def _lines(store: VictoriaLogs, logsql: str, matched_by: Literal["trace_id", "time"]) -> list[TraceLogLine]:
    rows = await store.query(f"{logsql} | sort by (_time) | limit {MAX_LINES}")
    return [TraceLogLine(**to_line(row).model_dump(), matched_by=matched_by) for row in rows]


async def trace_view(zipkin: Zipkin, logs: VictoriaLogs, trace_id: str, now: datetime | None = None) -> TraceView:
    """Join a trace's spans with its log lines.

    Raises TraceNotFound when neither store knows it, StoresMissing when both are down.
    """
    now = now or datetime.now(UTC)
    spans = await _spans(zipkin, trace_id)
    missing = [ZIPKIN] if spans is None else []
    spans = spans or []
    if spans:
        start = min(span.start for span in spans)
        end = max(span.start + timedelta(milliseconds=span.duration_ms) for span in spans)
        window = (start - _SLACK, end + _SLACK)
    else:
        start = end = None
        window = (now - _WITHOUT_SPANS, now)
    services = sorted({span.service for span in spans})
    # App lines are stored when vlagent reads them, a few seconds after they were written.
    by_trace = LogQuery(since=window[0], until=min(now, window[1] + _READ_DELAY), trace_id=trace_id)
    queries = [_lines(logs, lines_query(by_trace), "trace_id")]
    if services:
        sidecars = "|".join(re.escape(service) for service in services)
        in_window = LogQuery(since=window[0], until=window[1])
        daprd_files = f'file:~"/({sidecars})_daprd_[0-9]+[.]log$"'
        queries.append(_lines(logs, lines_query(in_window, daprd_files), "time"))
    try:
        found = await asyncio.gather(*queries)
        lines = sorted((line for group in found for line in group), key=lambda line: line.time)
    except StoreUnavailable:
        missing.append(VICTORIALOGS)
        lines = []
    if len(missing) == 2:
        raise StoresMissing(missing)
    if not spans and not lines:
        raise TraceNotFound(trace_id)
    return TraceView(
        trace_id=trace_id,
        start=start,
        duration_ms=(end - start).total_seconds() * 1000 if start and end else None,
        apps=sorted(set(services) | {line.app_id for line in lines}),
        spans=spans,
        logs=lines,
        missing=missing,
    )
