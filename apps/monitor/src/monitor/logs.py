"""Log lines of every app and every sidecar, read from VictoriaLogs with LogsQL.

vlagent ships each file `dapr run -f` writes under .dapr/logs/ (`<app-id>_app_<time>.log`, the
app's JSON lines; `<app-id>_daprd_<time>.log`, its sidecar's) and stores the file's path in the
field `file`: that path says which app and whether a line is the app's or its sidecar's, for
JSON lines and plain-text lines alike. App lines carry `request_id`, `trace_id` and `span_id`
(genai_platform.logs); daprd's carry none, so a trace's sidecar lines are found by time
(monitor/traces.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field

from monitor.stores import VictoriaLogs

# Severity order shared by Python's logging (lower-cased by genai_platform.logs) and daprd.
LEVELS = ("debug", "info", "warning", "error", "critical", "fatal")
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_APP_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_LOG_FILE = re.compile(r"(?:^|/)(?P<app>[a-z0-9][a-z0-9-]*)_(?P<source>app|daprd)_\d+\.log$")
# Fields shown as the line's own attributes; the rest go to `fields`.
_OWN = {"_time", "_msg", "_stream", "_stream_id", "file", "hostname", "level", "app_id", "request_id", "trace_id"}
_OWN |= {"span_id", "time", "msg", "message", "app_line", "status"}

MAX_LIMIT = 1000
MAX_OFFSET = 10_000


class InvalidQuery(Exception):
    """A query parameter that cannot be used; `field` names it (answered 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class LogLine(BaseModel):
    """One log line, from an app or from its Dapr sidecar."""

    time: datetime = Field(description="When the line was written (UTC); for a plain-text line, when it was read.")
    app_id: str = Field(description="The app whose file holds the line.")
    source: Literal["app", "daprd"] = Field(description="`app`: the service itself; `daprd`: its sidecar.")
    level: str | None = Field(None, description="debug, info, warning, error, critical or fatal; none for plain text.")
    message: str
    request_id: str | None = None
    trace_id: str | None = Field(None, description="W3C trace id (32 hex digits) of the request being served.")
    span_id: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="Every other field of a JSON line.")


class LogPage(BaseModel):
    """One page of log lines, newest first."""

    items: list[LogLine]
    limit: int
    offset: int
    next_offset: int | None = Field(None, description="Pass as `offset` for the next page; null on the last one.")
    since: datetime
    until: datetime
    logsql: str = Field(description="The LogsQL query run on VictoriaLogs, to paste into its own UI.")


@dataclass(frozen=True)
class LogQuery:
    """Validated filters of a log search (see `parse_query`)."""

    since: datetime
    until: datetime
    app: str | None = None
    source: str | None = None
    level: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    text: str | None = None
    limit: int = 100
    offset: int = 0


def parse_time(value: str, field: str, now: datetime) -> datetime:
    """An RFC 3339 timestamp (`2026-01-31T12:00:00Z`) or a duration back from now (`90s`, `15m`, `2h`, `7d`).

    Raises InvalidQuery naming `field` for anything else.
    """
    if match := _DURATION.match(value.strip()):
        try:
            return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:  # more than datetime can count back (before year 1)
            raise InvalidQuery(field, "the duration reaches back further than a date can") from None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(field, "expected an RFC 3339 time or a duration such as 15m, 2h, 7d") from None
    if moment.tzinfo is None:
        raise InvalidQuery(field, "give a time zone (e.g. a trailing Z for UTC)")
    return moment.astimezone(UTC)


def parse_query(params: dict[str, str], now: datetime | None = None) -> LogQuery:
    """Check a search's parameters: `app`, `source`, `level` (the least severity shown), `since` and
    `until` (default: the last hour), `request_id`, `trace_id`, `q` (text in the message), `limit`
    (1-1000, default 100) and `offset` (0-10000). Raises InvalidQuery naming the first bad one."""
    now = now or datetime.now(UTC)
    app = params.get("app") or None
    if app is not None and not _APP_ID.match(app):
        raise InvalidQuery("app", "expected an app id (lower-case letters, digits, dashes)")
    source = params.get("source") or None
    if source is not None and source not in ("app", "daprd"):
        raise InvalidQuery("source", "expected app or daprd")
    level = (params.get("level") or "").lower() or None
    if level is not None and level not in LEVELS:
        raise InvalidQuery("level", f"expected one of {', '.join(LEVELS)}")
    trace_id = (params.get("trace_id") or "").lower() or None
    if trace_id is not None and not _TRACE_ID.match(trace_id):
        raise InvalidQuery("trace_id", "expected 32 hexadecimal digits")
    until = parse_time(params["until"], "until", now) if params.get("until") else now
    since = parse_time(params["since"], "since", now) if params.get("since") else until - timedelta(hours=1)
    if since >= until:
        raise InvalidQuery("since", "must be before until")
    limit = _bounded_int(params, "limit", 100, 1, MAX_LIMIT)
    offset = _bounded_int(params, "offset", 0, 0, MAX_OFFSET)
    return LogQuery(
        since=since,
        until=until,
        app=app,
        source=source,
        level=level,
        request_id=params.get("request_id") or None,
        trace_id=trace_id,
        text=params.get("q") or None,
        limit=limit,
        offset=offset,
    )


def _bounded_int(params: dict[str, str], field: str, default: int, low: int, high: int) -> int:
    raw = params.get(field)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidQuery(field, "expected an integer") from None
    if not low <= value <= high:
        raise InvalidQuery(field, f"expected {low} to {high}")
    return value


def _quoted(value: str) -> str:
    # LogsQL reads a double-quoted string with JSON's escapes.
    return json.dumps(value)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# `dapr run -f` writes each app line to its file as `== APP - <app-id> == <line>`, so vlagent
# keeps app lines as text; these pipes take the prefix off and read a JSON line's fields at query
# time. daprd's lines reach the store as JSON (`--log-as-json`) and pass through unchanged.
UNPACK = (
    '| extract if (file:~"_app_[0-9]+[.]log$") "== APP - <_> == <app_line>" '
    '| unpack_json if (app_line:~"^[{]") from app_line'
)


def _window(query: LogQuery) -> str:
    return f"_time:[{_rfc3339(query.since)}, {_rfc3339(query.until)}]"


def raw_filters(query: LogQuery) -> str:
    """Filters on the stored line (before UNPACK): time, file, and words that narrow the scan."""
    parts = [_window(query)]
    if query.app or query.source:
        app = re.escape(query.app) if query.app else "[a-z0-9-]+"
        source = query.source or "(app|daprd)"
        parts.append(f"file:~{_quoted(f'/{app}_{source}_[0-9]+[.]log$')}")
    for phrase in (query.request_id, query.trace_id, query.text):
        if phrase:
            parts.append(_quoted(phrase))  # a phrase filter on the whole line
    return " ".join(parts)


def field_filters(query: LogQuery) -> str:
    """Filters on a line's fields (after UNPACK): level and exact ids; empty when none."""
    parts = []
    if query.level:
        shown = LEVELS[LEVELS.index(query.level) :]
        parts.append(f"level:in({', '.join(shown)})")
    if query.request_id:
        parts.append(f"request_id:={_quoted(query.request_id)}")
    if query.trace_id:
        parts.append(f"trace_id:={_quoted(query.trace_id)}")
    return " ".join(parts)


def lines_query(query: LogQuery, extra_raw: str = "") -> str:
    """The LogsQL of every line matching `query`, fields unpacked (no order, no limit)."""
    fields = field_filters(query)
    text = f"{raw_filters(query)}{f' {extra_raw}' if extra_raw else ''} {UNPACK}"
    return f"{text} | filter {fields}" if fields else text


def logsql(query: LogQuery) -> str:
    """The whole LogsQL query of one page: its lines, newest first, one line more than the page."""
    return f"{lines_query(query)} | sort by (_time desc) | offset {query.offset} | limit {query.limit + 1}"


def to_line(row: dict[str, Any]) -> LogLine:
    """A VictoriaLogs row as a LogLine; the file path names the app and the source.

    An app's JSON line keeps its own `time` (the stored `_time` is when vlagent read it).
    """
    match = _LOG_FILE.search(row.get("file", ""))
    app_id = match.group("app") if match else row.get("app_id", "unknown")
    source = match.group("source") if match else "app"
    message = row.get("message") or row.get("app_line") or row.get("_msg", "")
    return LogLine(
        time=row.get("time") or row["_time"],
        app_id=app_id,
        source=source,
        level=row.get("level") or row.get("status"),  # the dapr CLI's own lines say `status`
        message=message,
        request_id=row.get("request_id"),
        trace_id=row.get("trace_id"),
        span_id=row.get("span_id"),
        fields={key: value for key, value in row.items() if key not in _OWN},
    )


async def search(store: VictoriaLogs, query: LogQuery) -> LogPage:
    """One page of the lines matching `query`. Raises StoreUnavailable when VictoriaLogs is down."""
    text = logsql(query)
    rows = await store.query(text)
    lines = [to_line(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return LogPage(
        items=lines,
        limit=query.limit,
        offset=query.offset,
        next_offset=query.offset + query.limit if more else None,
        since=query.since,
        until=query.until,
        logsql=text,
    )
