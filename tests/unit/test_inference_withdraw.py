"""A deleted registry alias (model.promoted with `version` null) stops inference serving its version,
once the registry confirms the alias is gone (events may arrive out of order, or twice)."""

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from fakes import FakeDapr
from genai_platform.events import CloudEvent, Delivery, ModelPromoted
from genai_platform.idempotency import SeenEvents
from inference import promotion
from inference.openai_api import _not_serving
from inference.promotion import withdraw_deleted_alias
from inference.settings import InferenceSettings
from inference.swap import ModelService, NotLoaded, Promotion, start_generation


class ServedEngine:
    """What ModelService needs of an engine: its version, `retire`, and `stopped` once drained."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.loaded = object()
        self.retired = False
        self.stopped = threading.Event()

    def retire(self) -> None:
        self.retired = True
        self.stopped.set()


def serving(version: str, source: str = "registry:chat@production") -> tuple[ModelService, ServedEngine]:
    models = ModelService(InferenceSettings(INFERENCE_MODEL=source))
    engine = ServedEngine(version)
    models.current = engine  # type: ignore[assignment]
    return models, engine


def deleted(alias: str = "production", previous: int = 2, model: str = "chat") -> ModelPromoted:
    return ModelPromoted(model=model, version=None, alias=alias, previous_version=previous)


def registry(aliases: dict[str, int] | None) -> FakeDapr:
    """A fake sidecar whose registry holds model `chat` with `aliases` (None: no such model, 404)."""
    dapr = FakeDapr(app_id="inference")
    if aliases is None:
        answer = httpx.Response(404, json={"status": 404, "detail": "There is no model named 'chat'."})
        dapr.answer("registry", "v1/models/chat", answer)
    else:
        dapr.answer("registry", "v1/models/chat", {"name": "chat", "latest_version": 3, "aliases": aliases})
    return dapr


GONE = registry({"staging": 2})  # the registry as every deletion below leaves it


def test_a_deleted_alias_event_names_the_model_alias_and_where_it_pointed() -> None:
    assert deleted().deleted and not ModelPromoted(model="chat", version=2, alias="production").deleted
    with pytest.raises(ValueError, match="previous_version"):
        ModelPromoted(model="chat", version=None, alias="production")
    with pytest.raises(ValueError):
        ModelPromoted.model_validate({"model": "chat", "alias": "production"})  # `version` must be said


def test_the_followed_alias_deleted_stops_serving_its_version() -> None:
    async def scenario() -> None:
        models, engine = serving("2")
        assert await withdraw_deleted_alias(models, GONE.sidecar(), deleted())
        assert engine.retired and models.current is None and not models.ready
        assert "alias 'production' of model 'chat' was deleted" in (models.withdrawn or "")
        with pytest.raises(NotLoaded):
            await start_generation(models, lambda loaded: [1], 4, lambda tokens: None)  # type: ignore[arg-type]
        # A client's 503 says why, not "loading".
        refused = _not_serving(models)
        assert refused.status == 503 and "alias 'production' of model 'chat' was deleted" in refused.detail
        assert not await withdraw_deleted_alias(models, GONE.sidecar(), deleted())  # a redelivery changes nothing

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("source", "event"),
    [
        ("registry:chat@production", deleted(alias="staging")),  # another alias
        ("registry:chat@production", deleted(model="other")),  # another model
        ("registry:chat@production", deleted(previous=1)),  # it pointed at a version not served here
        ("registry:chat:2", deleted()),  # pinned to a number, not following the alias
    ],
)
def test_other_deletions_leave_the_served_version_alone(source: str, event: ModelPromoted) -> None:
    async def scenario() -> None:
        models, engine = serving("2", source)
        assert not await withdraw_deleted_alias(models, GONE.sidecar(), event)
        assert models.current is engine and not engine.retired

    asyncio.run(scenario())


def test_a_deletion_arriving_after_the_alias_was_set_again_to_the_served_version_keeps_it() -> None:
    """Deleted, then set again to 2: the broker hands the deletion over last. The registry says
    `production` points at 2, so 2 stays served."""

    async def scenario() -> None:
        models, engine = serving("2")
        dapr = registry({"production": 2})
        assert not await withdraw_deleted_alias(models, dapr.sidecar(), deleted())
        assert models.current is engine and not engine.retired and models.withdrawn is None
        assert [(c.app_id, c.method) for c in dapr.invocations] == [("registry", "v1/models/chat")]

    asyncio.run(scenario())


def test_a_deletion_arriving_after_the_alias_was_set_to_another_version_follows_it(monkeypatch) -> None:
    """Deleted, then set to 3: a late deletion promotes to 3 (the promotion's own event may be
    later still), as the alias says now."""
    fetched: list[str] = []

    async def fetch(client, name: str, reference: str, cache_dir: Path) -> tuple[Path, int]:
        fetched.append(f"{name}:{reference}")
        return Path("/models/chat/3"), int(reference)

    async def promote(source: str, version: str, name: str | None = None) -> Promotion:
        models.current = ServedEngine(version)  # type: ignore[assignment]
        return Promotion("2", version, changed=True)

    models, engine = serving("2")
    monkeypatch.setattr(promotion, "fetch_from_registry", fetch)
    monkeypatch.setattr(models, "promote", promote)
    assert not asyncio.run(withdraw_deleted_alias(models, registry({"production": 3}).sidecar(), deleted()))
    assert fetched == ["chat:3"] and models.current.version == "3"


def test_a_registry_that_cannot_answer_is_retried_and_the_redelivery_withdraws() -> None:
    """The registry unreachable: the subscription answers RETRY (Dapr redelivers) and serves on;
    the redelivered event, with the registry back and the alias gone, withdraws; a third delivery
    of that id is answered from the ledger, with no second call."""
    models, engine = serving("2")
    dapr = FakeDapr(app_id="inference")  # no registry answers: daprd's 500 ERR_DIRECT_INVOKE
    state = SimpleNamespace(models=models, sidecar=dapr.sidecar(), seen_events=SeenEvents())
    request = SimpleNamespace(app=SimpleNamespace(state=state))
    subscription = next(s for s in promotion.subscriptions.declared if s.route == "/events/model-promoted")
    event = CloudEvent(id="e-1", type="model.promoted", data=deleted().model_dump(mode="json"))

    async def scenario() -> list[Delivery]:
        answers = [await subscription.deliver(request, event)]  # type: ignore[arg-type]
        assert models.current is engine and not engine.retired  # not withdrawn on a guess
        dapr.answer("registry", "v1/models/chat", {"name": "chat", "aliases": {}})
        answers.append(await subscription.deliver(request, event))  # type: ignore[arg-type]
        answers.append(await subscription.deliver(request, event))  # type: ignore[arg-type]
        return answers

    assert asyncio.run(scenario()) == [Delivery.RETRY, Delivery.SUCCESS, Delivery.SUCCESS]
    assert engine.retired and models.current is None
    assert len([c for c in dapr.invocations if c.app_id == "registry"]) == 2
