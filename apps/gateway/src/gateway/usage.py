"""Each API key's use (requests, model tokens) in the Dapr state store, shared by every gateway replica.

One state key per usage account (`gateway-usage-<account>`: a key's project, or the SHA-256
digest of a key without one, gateway.api_keys.ApiKey.account; the key itself is never stored)
holds `{requests, tokens, window_start}`: the keys of a project, and a key and its rotated
successor, count together. Every change is a read-modify-write under the
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

Reservations: the shared count holds only what answers already used, so concurrent generations
of one key were each checked against tokens spent before any of them answered (a new-user
trial: eight streams of a key at 560 of 1000 tokens all started, and it ended at 1,688). A
generation therefore holds, from its admission until what it used is spent, the tokens it may
still spend (`reserve`): its `max_tokens` and an estimate of its prompt (`prompt_tokens_estimate`).
Reservations live in this replica's memory: a shared one would cost a store write more per
generation, on the path before its first token, and one held by a replica that died would
stay until its record's window turned. The rule and what it bounds across replicas:
apps/gateway/README.md, "Token quota".
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from gateway.batching import Coalescer
from genai_platform.contracts.openai import ChatMessage, error_object
from genai_platform.dapr import DaprError, Sidecar, StateConflict
from genai_platform.errors import ConcurrentUpdate, Problem

log = logging.getLogger(__name__)

PREFIX = "gateway-usage-"
DAY = 86400.0
ATTEMPTS = 50
# The prompt estimate (`prompt_tokens_estimate`), measured with the served model's tokenizer
# (SmolLM2): this repository's READMEs hold 3.3-3.9 characters per token, so UTF-8 bytes / 3
# over-counts English by about 10% and under-counts scripts of 3-byte characters (Japanese: 1.8
# bytes per token); each chat turn adds 5 tokens of its template (`<|im_start|>role\n`,
# `<|im_end|>\n`) and the reply's opening 3 (`<|im_start|>assistant\n`).
# A chat without a system turn gets the template's default one (SmolLM2's "You are a helpful AI
# assistant named SmolLM, trained by Hugging Face": 22 tokens with its turn markers).
BYTES_PER_TOKEN = 3
TOKENS_PER_TURN = 5
TOKENS_PER_REPLY = 3
DEFAULT_SYSTEM_TURN_TOKENS = 22
# Retry-After of a 429 refused for what the key's requests in flight hold (seconds): they give it
# back as they end, long before the quota's window does.
IN_FLIGHT_RETRY_S = 5


def usage_key(account: str) -> str:
    """The state key of a usage account's record (`ApiKey.account`: a project, or a key's digest,
    so the store never holds a usable key)."""
    return PREFIX + account


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


class Reservation:
    """Tokens a generation may still spend, held by this replica for its key until `release`
    (`UsageLedger.spend` releases it once the tokens used are counted). Releasing twice is a no-op."""

    def __init__(self, ledger: UsageLedger, account: str, tokens: int, max_tokens: int | None = None) -> None:
        self._ledger = ledger
        self._account = account
        self.tokens = tokens
        # The most the generation may now ask for, when its own `max_tokens` would pass the quota
        # (the key's last answer, cut to the tokens left); None when its own fits.
        self.max_tokens = max_tokens
        self.released = False

    def release(self) -> None:
        """Give the tokens back to the key's quota (synchronous: safe in a cancelled task's `finally`)."""
        if not self.released:
            self.released = True
            self._ledger._unhold(self._account, self.tokens)


def prompt_tokens_estimate(request: dict[str, Any]) -> int:
    """About how many tokens the model will read for an OpenAI chat (`messages`) or text completion
    (`prompt`) request, before its tokenizer has seen it: UTF-8 bytes / `BYTES_PER_TOKEN`, plus the
    chat template's `TOKENS_PER_TURN` per message, `TOKENS_PER_REPLY`, and its default system turn
    (`DEFAULT_SYSTEM_TURN_TOKENS`) when no message is a system or developer one (figures measured
    with the served model's tokenizer: see their comment); a prompt of token ids is their count. The
    gateway holds no tokenizer; the usage inference reports is what is spent."""
    messages = request.get("messages")
    if isinstance(messages, list):
        # Content parts count as the text the model reads (the contract's own joining rule).
        text = "".join(ChatMessage.model_validate(message).text() for message in messages)
        overhead = TOKENS_PER_TURN * len(messages) + TOKENS_PER_REPLY
        roles = {message.get("role") for message in messages if isinstance(message, dict)}
        if not roles & {"system", "developer"}:
            overhead += DEFAULT_SYSTEM_TURN_TOKENS
    else:
        prompt = request.get("prompt")
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
            # Token ids: the model reads exactly these (an array of ids, or of id arrays).
            return sum(len(p) if isinstance(p, list) else 1 for p in prompt)
        text = prompt if isinstance(prompt, str) else "".join(p for p in prompt or () if isinstance(p, str))
        overhead = 0
    return math.ceil(len(text.encode()) / BYTES_PER_TOKEN) + overhead


class UsageLedger:
    """Request counts and token quotas per usage account (`ApiKey.account`) kept in the state
    store, and this replica's reservations for the generations it runs (see the module docstring)."""

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
        # The newest record this replica has read or written of each key, and the tokens its
        # generations in flight hold (`reserve`).
        self._seen: dict[str, KeyUsage] = {}
        self._held: dict[str, int] = {}

    async def _change(self, account: str, requests: int = 0, tokens: int = 0) -> KeyUsage:
        """Add to a key's record and return what was stored (or read it, adding nothing); changes
        made while this replica's write of the key is in flight go together in the next one."""
        if not requests and not tokens:
            return self._note(account, await self._write(account, 0, 0))
        writer = self._writers.get(account)
        if writer is None:

            async def send(changes: list[tuple[int, int]]) -> list[KeyUsage]:
                record = await self._write(account, sum(r for r, _ in changes), sum(t for _, t in changes))
                return [record] * len(changes)

            writer = self._writers[account] = Coalescer(send, max_items=1000)
        return self._note(account, await writer.submit((requests, max(0, tokens))))

    def _note(self, account: str, record: KeyUsage) -> KeyUsage:
        """Keep `record` as the key's newest known one unless a newer was seen (a later window, or
        more tokens in the same one: within a window the count only grows)."""
        seen = self._seen.get(account)
        if seen is None or (record.window_start, record.tokens) >= (seen.window_start, seen.tokens):
            self._seen[account] = record
        return record

    async def _write(self, account: str, requests: int, tokens: int) -> KeyUsage:
        """Add to a key's record under its ETag, retrying lost races, and return what was stored."""
        key = usage_key(account)

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

    async def admit(self, account: str, *, spends_tokens: bool = True) -> None:
        """Count one request; raise 429 with Retry-After when it `spends_tokens` (a generation)
        and the key's token quota is used up, 503 when the state store cannot count it (a quota
        that cannot be checked is not waived). A request that spends no model tokens (reading
        `/v1/usage`, listing documents) is never refused by the token quota: a key over it could
        not even read its own usage (a new-user trial)."""
        try:
            record = await self._change(account, requests=1)
        except (DaprError, ConcurrentUpdate) as error:
            raise _store_unavailable() from error
        if spends_tokens and record.tokens >= self.tokens_per_day:
            raise self._over_quota(record, f"The daily quota of {self.tokens_per_day} tokens for this key is used up.")

    def reserve(self, account: str, *, max_tokens: int, prompt_tokens: int) -> Reservation:
        """Hold `max_tokens + prompt_tokens` of the key's quota for an admitted generation (after
        `admit`), or raise 429 (the quota's problem and Retry-After) when they cannot be held.

        With `spent` the key's tokens in its window (the newest record this replica has seen) and
        `held` what this replica's other generations of the key hold, the generation is admitted
        when `spent + held + max_tokens + prompt_tokens <= tokens_per_day`, and also when `held`
        is 0 and `spent < tokens_per_day`: one generation at a time may use the last tokens of a
        quota whatever its `max_tokens`, cut to them (`Reservation.max_tokens`: what is left less
        the prompt's estimate, at least 1), so its last tokens stay usable without a lower
        `max_tokens` and a key ends past its quota only by what the prompt's estimate missed (a
        new-user trial: uncut, an answer without `max_tokens` took a key to 2,089 of 1,000). The
        429's detail says what is held and the `max_tokens` that would fit now; its Retry-After
        is the window's end when the quota is spent, IN_FLIGHT_RETRY_S when what is held stands
        in the way (it is given back as those requests end).
        """
        tokens = max_tokens + prompt_tokens
        record = self._seen.get(account, KeyUsage()).rolled(self._wall(), self._window)
        held = self._held.get(account, 0)
        left = self.tokens_per_day - record.tokens
        if left <= 0:
            raise self._over_quota(record, f"The daily quota of {self.tokens_per_day} tokens for this key is used up.")
        if held and tokens > left - held:
            fits = left - held - prompt_tokens
            lower = f"ask for max_tokens {fits} or fewer" if fits > 0 else "ask for fewer max_tokens"
            held_words = f"hold {held} of them" if held <= left else f"may use {held} (more than that)"
            raise Problem(
                429,
                f"{left} tokens are left of this key's daily quota of {self.tokens_per_day}, and its "
                f"requests in flight {held_words} until they end; this one may use {tokens} "
                f"(max_tokens {max_tokens} and about {prompt_tokens} for the prompt). Retry when they "
                f"have ended, or {lower}.",
                headers={"Retry-After": str(IN_FLIGHT_RETRY_S)},
            )
        cut = None
        if tokens > left:  # alone: the key's last answer, cut to the tokens left
            cut = max(1, left - prompt_tokens)
            tokens = cut + prompt_tokens
        self._held[account] = held + tokens
        return Reservation(self, account, tokens, cut)

    def reserved(self, account: str) -> int:
        """The tokens this replica's generations in flight hold for `account`."""
        return self._held.get(account, 0)

    def _unhold(self, account: str, tokens: int) -> None:
        held = self._held.get(account, 0) - tokens
        if held > 0:
            self._held[account] = held
        else:
            self._held.pop(account, None)

    def _over_quota(self, record: KeyUsage, detail: str) -> Problem:
        """The quota's 429, with Retry-After at the end of `record`'s window (seconds, at least 1)."""
        wait = record.window_start + self._window - self._wall()
        # OpenAI's type and code for a spent quota, which waiting seconds does not fix.
        error = error_object(detail, "insufficient_quota", code="insufficient_quota")
        return Problem(429, detail, headers={"Retry-After": str(max(1, math.ceil(wait)))}, error=error)

    async def spend(self, account: str, tokens: int, reservation: Reservation | None = None) -> None:
        """Add the model tokens an answer used (prompt + completion, as inference reports them),
        then release the answer's `reservation`: the count lands before the hold goes, so this
        replica's checks never miss both. Released also when the write fails or is cancelled.

        The answer is out already: a store failure is logged, never raised to the client.
        """
        try:
            if tokens > 0:
                await self._change(account, tokens=tokens)
        except (DaprError, ConcurrentUpdate):
            log.warning("%d tokens could not be counted: the state store failed", tokens, exc_info=True)
        finally:
            if reservation is not None:
                reservation.release()

    async def read(self, account: str) -> KeyUsage:
        """The key's record as it stands, its window rolled if it is over; 503 when the store fails."""
        try:
            return await self._change(account)
        except (DaprError, ConcurrentUpdate) as error:
            raise _store_unavailable() from error

    def resets_in(self, record: KeyUsage) -> float:
        """Seconds until `record`'s token window ends (0.1 s resolution; a full window before any use)."""
        if not record.window_start:
            return self._window
        return round(max(0.0, record.window_start + self._window - self._wall()), 1)


class Usage(BaseModel):
    """One API key's use as `GET /v1/usage` answers it: counted by every replica together, with
    the other keys of its project (and the key it was rotated from)."""

    project: str | None = Field(
        description="The key's project, whose keys share this usage; null for a key counted on its own."
    )
    requests: int = Field(
        description="Requests made with this key and its project's other keys, refused ones too, by every replica."
    )
    requests_per_minute: int = Field(description="The key's request rate limit (per gateway replica).")
    tokens_used: int = Field(description="Model tokens spent in the current quota window.")
    tokens_per_day: int = Field(description="The key's token quota per window of one day.")
    window_resets_in_seconds: float = Field(description="Seconds until the quota window ends (0.1 s resolution).")


async def usage_of(ledger: UsageLedger, account: str, project: str | None, requests_per_minute: int) -> Usage:
    """The `GET /v1/usage` answer for a key's usage `account` and `project`; 503 when the state store fails."""
    record = await ledger.read(account)
    return Usage(
        project=project,
        requests=record.requests,
        requests_per_minute=requests_per_minute,
        tokens_used=record.tokens,
        tokens_per_day=ledger.tokens_per_day,
        window_resets_in_seconds=ledger.resets_in(record),
    )


def _store_unavailable() -> Problem:
    return Problem(503, "API key usage cannot be read from the state store right now.", headers={"Retry-After": "5"})
