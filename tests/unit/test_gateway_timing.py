"""The chat pipeline's stage durations, as a Server-Timing header."""

import pytest

from gateway.timing import ServerTiming, parse_server_timing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stages_are_told_in_pipeline_order_in_milliseconds() -> None:
    clock = Clock()
    timing = ServerTiming(clock)
    with timing.stage("inference"):
        clock.now += 0.5
    with timing.stage("guard-in"):
        clock.now += 0.004
    header = timing.header()
    assert header.startswith('guard-in;dur=4.0;desc="input rails", inference;dur=500.0')
    assert parse_server_timing(header) == {"guard-in": 4.0, "inference": 500.0, "total": 504.0}


def test_a_stage_run_more_than_once_adds_up() -> None:
    clock = Clock()
    timing = ServerTiming(clock)
    for _ in range(3):
        with timing.stage("guard-out"):
            clock.now += 0.01
    assert timing.durations_ms["guard-out"] == pytest.approx(30.0)


def test_a_moment_since_the_start_is_recorded_once() -> None:
    clock = Clock()
    timing = ServerTiming(clock)
    clock.now += 0.2
    timing.since_start("first-token")
    clock.now += 1.0
    timing.since_start("first-token")
    assert timing.durations_ms == {"first-token": pytest.approx(200.0)}
    assert "total" not in parse_server_timing(timing.header(total=False))


def test_a_stage_that_fails_is_still_timed() -> None:
    clock = Clock()
    timing = ServerTiming(clock)
    try:
        with timing.stage("retrieve"):
            clock.now += 0.03
            raise RuntimeError("features down")
    except RuntimeError:
        pass
    assert parse_server_timing(timing.header(total=False)) == {"retrieve": 30.0}


def test_other_servers_timing_headers_parse() -> None:
    assert parse_server_timing('cache;desc="Cache Read";dur=23.2, db;dur=53, app;dur=47.2, miss') == {
        "cache": 23.2,
        "db": 53.0,
        "app": 47.2,
    }
