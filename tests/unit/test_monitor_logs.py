"""Log searches: parameters checked and named when wrong, LogsQL built, store rows read."""

from datetime import UTC, datetime, timedelta

import pytest

from monitor.logs import UNPACK, InvalidQuery, logsql, parse_query, to_line

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-03-01T10:00:00"}, "since"),  # no time zone
        ({"since": "99999999999999h"}, "since"),  # further back than a date can count (was a 500)
        ({"since": "9999999999d"}, "since"),
        ({"until": "12:00"}, "until"),
        ({"since": "2026-03-01T11:00:00Z", "until": "2026-03-01T10:00:00Z"}, "since"),  # backwards
        ({"level": "loud"}, "level"),
        ({"app": "Gateway;drop"}, "app"),
        ({"source": "kernel"}, "source"),
        ({"trace_id": "xyz"}, "trace_id"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
def test_a_bad_parameter_is_named(params: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        parse_query(params, NOW)
    assert raised.value.field == field


def test_since_takes_a_duration_back_from_now_and_defaults_to_an_hour() -> None:
    assert parse_query({"since": "15m"}, NOW).since == NOW - timedelta(minutes=15)
    default = parse_query({}, NOW)
    assert (default.since, default.until) == (NOW - timedelta(hours=1), NOW)


def test_the_logsql_filters_by_app_file_level_ids_and_text() -> None:
    query = parse_query(
        {
            "app": "gateway",
            "source": "daprd",
            "level": "warning",
            "request_id": 'r"1',
            "trace_id": "0AF7651916CD43DD8448EB211C80319C",
            "q": "timed out",
            "since": "2026-03-01T11:00:00Z",
            "limit": "20",
            "offset": "40",
        },
        NOW,
    )
    assert logsql(query) == (
        "_time:[2026-03-01T11:00:00.000Z, 2026-03-01T12:00:00.000Z] "
        'file:~"/gateway_daprd_[0-9]+[.]log$" "r\\"1" "0af7651916cd43dd8448eb211c80319c" "timed out" '
        f"{UNPACK} "
        '| filter level:in(warning, error, critical, fatal) request_id:="r\\"1" '
        'trace_id:="0af7651916cd43dd8448eb211c80319c" '
        "| sort by (_time desc) | offset 40 | limit 21"
    )


def test_an_app_line_behind_the_cli_prefix_keeps_its_own_time_and_fields() -> None:
    line = to_line(
        {
            "_time": "2026-03-01T11:59:03Z",
            "_msg": '== APP - guard == {"time": "2026-03-01T11:59:00.250+00:00", "message": "request served"}',
            "file": "/repo/.dapr/logs/guard_app_20260301115000.log",
            "app_line": '{"time": "2026-03-01T11:59:00.250+00:00", "message": "request served"}',
            "time": "2026-03-01T11:59:00.250+00:00",
            "level": "info",
            "message": "request served",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "route": "/v1/guard/input",
        }
    )
    assert (line.time.isoformat(), line.source, line.message) == (
        "2026-03-01T11:59:00.250000+00:00",
        "app",
        "request served",
    )
    assert line.fields == {"route": "/v1/guard/input"}


def test_a_row_names_its_app_and_source_by_its_file_and_keeps_plain_text() -> None:
    daprd = to_line(
        {
            "_time": "2026-03-01T11:59:00Z",
            "_msg": "HTTP API Called",
            "file": "/repo/.dapr/logs/guard_daprd_20260301115000.log",
            "app_id": "guard",
            "level": "info",
            "method": "POST /v1.0/invoke/inference/method/v1/chat/completions",
        }
    )
    assert (daprd.app_id, daprd.source, daprd.level) == ("guard", "daprd", "info")
    assert daprd.fields == {"method": "POST /v1.0/invoke/inference/method/v1/chat/completions"}
    text = to_line(
        {
            "_time": "2026-03-01T11:59:01Z",
            "_msg": "Traceback (most recent call last):",
            "file": "/r/.dapr/logs/ui_app_1.log",
        }
    )
    assert (text.app_id, text.source, text.level, text.message) == (
        "ui",
        "app",
        None,
        "Traceback (most recent call last):",
    )
