"""A deleted registry alias (model.promoted with `version` null) stops inference serving its version."""

import asyncio
import threading

import pytest

from genai_platform.events import ModelPromoted
from inference.openai_api import _not_serving
from inference.promotion import withdraw_deleted_alias
from inference.settings import InferenceSettings
from inference.swap import ModelService, NotLoaded, start_generation


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


def test_a_deleted_alias_event_names_the_model_alias_and_where_it_pointed() -> None:
    assert deleted().deleted and not ModelPromoted(model="chat", version=2, alias="production").deleted
    with pytest.raises(ValueError, match="previous_version"):
        ModelPromoted(model="chat", version=None, alias="production")
    with pytest.raises(ValueError):
        ModelPromoted.model_validate({"model": "chat", "alias": "production"})  # `version` must be said


def test_the_followed_alias_deleted_stops_serving_its_version() -> None:
    async def scenario() -> None:
        models, engine = serving("2")
        assert await withdraw_deleted_alias(models, deleted())
        assert engine.retired and models.current is None and not models.ready
        assert "alias 'production' of model 'chat' was deleted" in (models.withdrawn or "")
        with pytest.raises(NotLoaded):
            await start_generation(models, lambda loaded: [1], 4, lambda tokens: None)  # type: ignore[arg-type]
        # A client's 503 says why, not "loading".
        refused = _not_serving(models)
        assert refused.status == 503 and "alias 'production' of model 'chat' was deleted" in refused.detail
        assert not await withdraw_deleted_alias(models, deleted())  # a redelivery changes nothing

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
        assert not await withdraw_deleted_alias(models, event)
        assert models.current is engine and not engine.retired

    asyncio.run(scenario())
