"""The render cache: bounded, expires, dropped per prompt on `prompt.updated`, idempotent."""

import asyncio
from types import SimpleNamespace

from genai_platform.events import CloudEvent, Delivery
from genai_platform.idempotency import SeenEvents
from prompts.cache import RenderCache
from prompts.routes import subscriptions
from prompts.templates import VersionDraft, compile_version

VERSION = VersionDraft(type="text", template="hi").model_dump(mode="json") | {"version": 1}
COMPILED = compile_version(VERSION)


def updated(event_id: str, data: object) -> CloudEvent:
    return CloudEvent(id=event_id, topic="prompt.updated", data=data)


def delivered(cache: RenderCache, event: CloudEvent, seen: SeenEvents | None = None) -> Delivery:
    """Deliver as the sidecar would, through prompts' declared `prompt.updated` subscription."""
    state = SimpleNamespace(render_cache=cache, seen_events=seen if seen is not None else SeenEvents())
    (subscription,) = subscriptions.declared
    return asyncio.run(subscription.deliver(SimpleNamespace(app=SimpleNamespace(state=state)), event))  # type: ignore[arg-type]


def test_an_event_drops_only_the_named_prompt() -> None:
    cache = RenderCache()
    cache.put("a", "production", VERSION, COMPILED)
    cache.put("a", "3", VERSION, COMPILED)
    cache.put("b", "production", VERSION, COMPILED)
    assert delivered(cache, updated("e1", {"name": "a", "action": "label.moved"})) is Delivery.SUCCESS
    assert cache.get("a", "production") is None and cache.get("a", "3") is None
    assert cache.get("b", "production") is not None


def test_a_redelivered_event_changes_nothing() -> None:
    cache, seen = RenderCache(), SeenEvents()
    assert delivered(cache, updated("e1", {"name": "a"}), seen) is Delivery.SUCCESS
    cache.put("a", "production", VERSION, COMPILED)
    assert delivered(cache, updated("e1", {"name": "a"}), seen) is Delivery.SUCCESS
    assert cache.get("a", "production") is not None


def test_an_unreadable_event_drops_everything_and_goes_to_the_dead_letters() -> None:
    cache = RenderCache()
    cache.put("a", "production", VERSION, COMPILED)
    assert delivered(cache, updated("e2", "garbage")) is Delivery.DROP
    assert len(cache) == 0


def test_entries_expire_and_the_cache_is_bounded() -> None:
    now = [0.0]
    cache = RenderCache(capacity=2, ttl_s=10, clock=lambda: now[0])
    cache.put("a", "1", VERSION, COMPILED)
    cache.put("b", "1", VERSION, COMPILED)
    cache.put("c", "1", VERSION, COMPILED)
    assert cache.get("a", "1") is None and len(cache) == 2
    now[0] = 11
    assert cache.get("b", "1") is None
    assert cache.misses == 2 and cache.hits == 0


def test_a_version_number_and_a_label_are_different_keys() -> None:
    cache = RenderCache()
    cache.put("a", 2, VERSION | {"version": 2}, COMPILED)
    assert cache.get("a", "2") is None  # a label can never answer for version 2, nor the reverse
    assert cache.get("a", 2).version["version"] == 2


def test_a_label_move_is_served_after_its_event() -> None:
    """`production` moves 1 -> 2: the cached version 1 goes with the event, version 2 is read next."""
    cache = RenderCache()
    cache.put("a", "production", VERSION, COMPILED)
    cache.put("a", 1, VERSION, COMPILED)
    assert cache.get("a", "production").version["version"] == 1
    delivered(cache, updated("move-1", {"name": "a", "action": "label.moved", "version": 2}))
    assert cache.get("a", "production") is None and cache.get("a", 1) is None
    second = VERSION | {"version": 2}
    cache.put("a", "production", second, compile_version(second))
    assert cache.get("a", "production").version["version"] == 2
