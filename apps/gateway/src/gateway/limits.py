"""Per-key request rate limits and token quotas.

Counters live in this gateway replica's memory: a limit of N per minute across R replicas
admits up to N*R. That trade keeps a store round-trip off every request; a shared limit would
use the state store with ETags.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from genai_platform.errors import Problem


@dataclass
class TokenBucket:
    """`capacity` requests at once, refilled at `capacity` per `period` seconds."""

    capacity: float
    period: float
    tokens: float = field(init=False)
    updated: float = field(init=False)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.tokens = self.capacity
        self.updated = self.clock()

    def take(self) -> float:
        """Take one request; 0.0 when allowed, else the seconds until one is."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.capacity / self.period)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * self.period / self.capacity


@dataclass
class TokenQuota:
    """Model tokens a key may use per window (prompt + completion, as inference reports them)."""

    limit: int
    window: float
    used: int = 0
    window_start: float = field(init=False)
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.window_start = self.clock()

    def _roll(self) -> None:
        now = self.clock()
        if now - self.window_start >= self.window:
            self.window_start = now - (now - self.window_start) % self.window
            self.used = 0

    def seconds_until_reset(self) -> float:
        self._roll()
        return 0.0 if self.used < self.limit else self.window_start + self.window - self.clock()

    def spend(self, tokens: int) -> None:
        self._roll()
        self.used += max(0, tokens)


class Limits:
    """The rate limit and token quota of every API key seen by this replica."""

    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_day: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self.tokens_per_day = tokens_per_day
        self._clock = clock
        self._wall = wall
        self._buckets: dict[str, TokenBucket] = {}
        self._quotas: dict[str, TokenQuota] = {}
        self._requests: dict[str, int] = {}

    def admit(self, key: str) -> None:
        """Raise 429 with Retry-After when this key is over its rate or its token quota."""
        self._requests[key] = self._requests.get(key, 0) + 1
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.requests_per_minute, 60.0, clock=self._clock)
        wait = bucket.take()
        if wait > 0:
            raise _too_many(wait, f"Over the limit of {self.requests_per_minute} requests per minute for this key.")
        wait = self._quota(key).seconds_until_reset()
        if wait > 0:
            raise _too_many(wait, f"The daily quota of {self.tokens_per_day} tokens for this key is used up.")

    def spend(self, key: str, tokens: int) -> None:
        self._quota(key).spend(tokens)

    def usage(self, key: str) -> dict[str, int | float]:
        """This key's use seen by this replica: requests made (refused ones too) since it started,
        tokens spent in the current quota window and seconds until that window ends."""
        quota = self._quota(key)
        quota.seconds_until_reset()  # rolls a window that is over
        return {
            "requests": self._requests.get(key, 0),
            "requests_per_minute": self.requests_per_minute,
            "tokens_used": quota.used,
            "tokens_per_day": self.tokens_per_day,
            "window_resets_in_seconds": round(max(0.0, quota.window_start + quota.window - self._wall()), 1),
        }

    def _quota(self, key: str) -> TokenQuota:
        quota = self._quotas.get(key)
        if quota is None:
            quota = self._quotas[key] = TokenQuota(self.tokens_per_day, 86400.0, clock=self._wall)
        return quota


class Usage(BaseModel):
    """One API key's use as `GET /v1/usage` answers it (see `Limits.usage`)."""

    requests: int = Field(description="Requests made with this key since this replica started, refused ones too.")
    requests_per_minute: int = Field(description="The key's request rate limit.")
    tokens_used: int = Field(description="Model tokens spent in the current quota window.")
    tokens_per_day: int = Field(description="The key's token quota per window of one day.")
    window_resets_in_seconds: float = Field(description="Seconds until the quota window ends (0.1 s resolution).")


def _too_many(wait: float, detail: str) -> Problem:
    return Problem(429, detail, headers={"Retry-After": str(max(1, math.ceil(wait)))})
