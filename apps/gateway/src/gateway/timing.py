"""How long each stage of a chat request took, told to the caller as a `Server-Timing` header.

`Server-Timing` (W3C Server Timing) is what browsers' developer tools and HTTP clients already
show: `guard-in;dur=3.1;desc="input rails", retrieve;dur=41.7;desc="retrieval", ...`, in
milliseconds. A streamed answer's headers leave before generation starts, so they hold the
stages before it; the stream's last event repeats the header with every stage (`server_timing`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Stage names, in pipeline order, and what each measures (the header's `desc`).
STAGES = {
    "guard-in": "input rails",
    "retrieve": "retrieval",
    "prompt": "prompt render",
    "inference-first": "inference until its first token",
    "inference": "inference",
    "guard-out": "output rails",
    "first-token": "request until the first text released",
    "total": "whole request",
}


class ServerTiming:
    """Stage durations of one request; a stage run more than once (output rails) adds up."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.started = clock()
        self.durations_ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the `with` block as stage `name` (added to what the stage already took)."""
        started = self._clock()
        try:
            yield
        finally:
            self.add(name, self._clock() - started)

    def add(self, name: str, seconds: float) -> None:
        """Add `seconds` to stage `name` (kept in milliseconds)."""
        self.durations_ms[name] = self.durations_ms.get(name, 0.0) + seconds * 1000

    def since_start(self, name: str) -> None:
        """Record `name` as the time from the request's arrival until now, once."""
        if name not in self.durations_ms:
            self.add(name, self._clock() - self.started)

    def header(self, *, total: bool = True) -> str:
        """The Server-Timing header value (W3C Server Timing): `name;dur=<ms>;desc="..."` per stage in
        pipeline order, with `total` (the time since the request arrived) unless `total` is False."""
        durations = dict(self.durations_ms)
        if total:
            durations["total"] = (self._clock() - self.started) * 1000
        ordered = sorted(durations, key=lambda name: list(STAGES).index(name) if name in STAGES else len(STAGES))
        return ", ".join(_metric(name, durations[name]) for name in ordered)


def _metric(name: str, milliseconds: float) -> str:
    desc = STAGES.get(name)
    return f"{name};dur={milliseconds:.1f}" + (f';desc="{desc}"' if desc else "")


def parse_server_timing(value: str) -> dict[str, float]:
    """`{name: milliseconds}` from a Server-Timing header value (metrics without `dur` are left out)."""
    durations: dict[str, float] = {}
    for metric in value.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip() == "dur" and name:
                try:
                    durations[name] = float(raw.strip().strip('"'))
                except ValueError:
                    continue
    return durations
