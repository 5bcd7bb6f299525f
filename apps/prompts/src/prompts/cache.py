"""A small cache of compiled prompt versions, dropped per prompt on `prompt.updated`.

Keyed by (prompt, reference) where the reference is a label (str) or a version number (int):
`2` and `"2"` are different keys, and labels start with a letter, so neither can stand for the
other. What goes stale is a label's target, so every entry of a prompt is dropped when an
event names it. The event is the fast path; the time-to-live bounds staleness if an event is
missed (on Redis Streams, replicas of one app-id share a consumer group, so only one replica
sees each event).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prompts.templates import CompiledVersion


@dataclass(frozen=True)
class CachedVersion:
    version: dict
    compiled: CompiledVersion
    expires_at: float


class RenderCache:
    """LRU of compiled versions, dropped per prompt by `prompt.updated` (prompts.routes)."""

    def __init__(self, capacity: int = 256, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: OrderedDict[tuple[str, int | str], CachedVersion] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, name: str, ref: int | str) -> CachedVersion | None:
        entry = self._entries.get((name, ref))
        if entry is None or entry.expires_at <= self.clock():
            self._entries.pop((name, ref), None)
            self.misses += 1
            return None
        self._entries.move_to_end((name, ref))
        self.hits += 1
        return entry

    def put(self, name: str, ref: int | str, version: dict, compiled: CompiledVersion) -> None:
        self._entries[(name, ref)] = CachedVersion(version, compiled, self.clock() + self.ttl_s)
        self._entries.move_to_end((name, ref))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, name: str | None = None) -> int:
        """Forget every entry of prompt `name` (all prompts when None); returns how many."""
        keys = [key for key in self._entries if name is None or key[0] == name]
        for key in keys:
            del self._entries[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._entries)
