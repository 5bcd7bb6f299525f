"""Each API key's use (requests, model tokens) in the Dapr state store, shared by every gateway replica.

One state key per API key (`gateway-usage-<sha256 of the key>`: the key itself is never
stored) holds `{requests, tokens, window_start}`. Every change is a read-modify-write under the
record's ETag, retried with jitter when another write got there first: two replicas counting at
once both land, one after re-reading, so no increment is lost and a restart loses nothing. The token quota is checked
against this shared count, so it holds across replicas and restarts; the request *rate* limit
stays in each replica's memory (gateway.limits), where a store round-trip per check would cost
more than an approximate rate is worth.

Cost: one state read and one write per request, and per answer that used tokens (Redis on
loopback: about a millisecond each). Changes to one key that a replica makes while its write is
in flight go together in its next write (gateway.batching.Coalescer): concurrent requests of one
key no longer race each other for the ETag (at concurrency 4 in bench/chat, up to four rounds of
lost races, read and write each, before the last request was admitted).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from gateway.batching import Coalescer
from genai_platform.dapr import DaprError, Sidecar, StateConflict
from genai_platform.errors import ConcurrentUpdate, Problem

log = logging.getLogger(__name__)

PREFIX = "gateway-usage-"
DAY = 86400.0
ATTEMPTS = 50


def usage_key(api_key: str) -> str:
    """The state key of an API key's record: a digest, so the store never holds a usable key."""
    return PREFIX + hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyUsage:
    """One key's record: requests ever made (refused ones too), tokens in the current window,
    and the window's start (Unix seconds; 0 before the first request)."""

    requests: int = 0
    tokens: int = 0
    window_start: float = 0.0

    def rolled(self, now: float, window: float) -> KeyUsage:
        """The record with its token window moved on to the one holding `now` (tokens reset)."""
        if self.window_start and now - self.window_start < window:
            return self
        start = now if not self.window_start else now - (now - self.window_start) % window
        return KeyUsage(self.requests, 0, start)


class UsageLedger:
    """Per-key request counts and token quotas kept in the state store (see the module docstring)."""

    def __init__(
        self,
        sidecar: Sidecar,
        tokens_per_day: int,
        *,
        window_seconds: float = DAY,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._sidecar = sidecar
        self.tokens_per_day = tokens_per_day
        self._window = window_seconds
        self._wall = wall
        # One per API key used (the keys are the platform's own, a handful): its pending changes.
        self._writers: dict[str, Coalescer[tuple[int, int], KeyUsage]] = {}

    async def _change(self, api_key: str, requests: int = 0, tokens: int = 0) -> KeyUsage:
        """Add to a key's record and return what was stored (or read it, adding nothing); changes
        made while this replica's write of the key is in flight go together in the next one."""
        if not requests and not tokens:
            return await self._write(api_key, 0, 0)
        writer = self._writers.get(api_key)
        if writer is None:

            async def send(changes: list[tuple[int, int]]) -> list[KeyUsage]:
                record = await self._write(api_key, sum(r for r, _ in changes), sum(t for _, t in changes))
                return [record] * len(changes)

            writer = self._writers[api_key] = Coalescer(send, max_items=1000)
        return await writer.submit((requests, max(0, tokens)))

    async def _write(self, api_key: str, requests: int, tokens: int) -> KeyUsage:
        """Add to a key's record under its ETag, retrying lost races, and return what was stored."""
        key = usage_key(api_key)

        async def attempt() -> KeyUsage:
            item = await self._sidecar.get_state(key)
            current = KeyUsage(**item.value) if item else KeyUsage()
            now = self._wall()
            record = current.rolled(now, self._window)
            if not requests and not tokens and record == current:
                return record
            record = KeyUsage(record.requests + requests, record.tokens + max(0, tokens), record.window_start)
            await self._sidecar.save_state(
                key,
                {"requests": record.requests, "tokens": record.tokens, "window_start": record.window_start},
                etag=item.etag if item else None,
                concurrency="first-write",  # create-only when absent: two first requests both count
            )
            return record

        # Every request of a key writes its record: under load a writer may lose several races in
        # a row. Jitter spreads the retries; each lost race means another writer's count landed.
        for attempt_number in range(ATTEMPTS):
            try:
                return await attempt()
            except StateConflict:
                await asyncio.sleep(random.uniform(0, 0.002 * min(attempt_number + 1, 10)))
        raise ConcurrentUpdate("This key's usage kept changing under the update; try again.")

    async def admit(self, api_key: str, *, spends_tokens: bool = True) -> None:
        """Count one request; raise 429 with Retry-After when it `spends_tokens` (a generation)
        and the key's token quota is used up, 503 when the state store cannot count it (a quota
        that cannot be checked is not waived). A request that spends no model tokens (reading
        `/v1/usage`, listing documents) is never refused by the token quota: a key over it could
        not even read its own usage (a new-user trial)."""
        try:
            record = await self._change(api_key, requests=1)
        except (DaprError, ConcurrentUpdate) as error:
            raise _store_unavailable() from error
        if spends_tokens and record.tokens >= self.tokens_per_day:
            wait = record.window_start + self._window - self._wall()
            raise Problem(
                429,
                f"The daily quota of {self.tokens_per_day} tokens for this key is used up.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    async def spend(self, api_key: str, tokens: int) -> None:
        """Add the model tokens an answer used (prompt + completion, as inference reports them).

        The answer is out already: a store failure is logged, never raised to the client.
        """
        if tokens <= 0:
            return
        try:
            await self._change(api_key, tokens=tokens)
        except (DaprError, ConcurrentUpdate):
            log.warning("%d tokens could not be counted: the state store failed", tokens, exc_info=True)

    async def read(self, api_key: str) -> KeyUsage:
        """The key's record as it stands, its window rolled if it is over; 503 when the store fails."""
        try:
            return await self._change(api_key)
        except (DaprError, ConcurrentUpdate) as error:
            raise _store_unavailable() from error

    def resets_in(self, record: KeyUsage) -> float:
        """Seconds until `record`'s token window ends (0.1 s resolution; a full window before any use)."""
        if not record.window_start:
            return self._window
        return round(max(0.0, record.window_start + self._window - self._wall()), 1)


class Usage(BaseModel):
    """One API key's use as `GET /v1/usage` answers it: counted by every replica together."""

    requests: int = Field(description="Requests made with this key, refused ones too, by every gateway replica.")
    requests_per_minute: int = Field(description="The key's request rate limit (per gateway replica).")
    tokens_used: int = Field(description="Model tokens spent in the current quota window.")
    tokens_per_day: int = Field(description="The key's token quota per window of one day.")
    window_resets_in_seconds: float = Field(description="Seconds until the quota window ends (0.1 s resolution).")


async def usage_of(ledger: UsageLedger, api_key: str, requests_per_minute: int) -> Usage:
    """The `GET /v1/usage` answer for `api_key`; 503 when the state store fails."""
    record = await ledger.read(api_key)
    return Usage(
        requests=record.requests,
        requests_per_minute=requests_per_minute,
        tokens_used=record.tokens,
        tokens_per_day=ledger.tokens_per_day,
        window_resets_in_seconds=ledger.resets_in(record),
    )


def _store_unavailable() -> Problem:
    return Problem(503, "API key usage cannot be read from the state store right now.", headers={"Retry-After": "5"})
