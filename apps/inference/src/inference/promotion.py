"""Hot swap triggers: the `model.promoted` event and the admin call, both into ModelService."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from genai_platform.errors import Problem
from genai_platform.events import CloudEvent, Delivery, DeliveryAnswer, Topic
from genai_platform.service import SettingsDep
from inference.model import ModelNotFound
from inference.swap import ModelService

log = logging.getLogger(__name__)

subscriptions = APIRouter(tags=["dapr"])
admin = APIRouter(prefix="/admin", tags=["admin"])


class PromotedModel(BaseModel):
    """What `model.promoted` carries (and the admin call takes) to find the new version.

    Until the registry serves artifacts, `path` names a Hugging Face model folder (or a
    .gguf file) this service can read.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: str = Field(min_length=1)
    path: str = Field(min_length=1, validation_alias="path")
    model: str | None = Field(None, description="The model's name; events for other models are ignored.")


def get_models(request: Request) -> ModelService:
    return request.app.state.models


ModelsDep = Annotated[ModelService, Depends(get_models)]


class SeenEvents:
    """CloudEvent ids already handled, so a redelivered event does no second swap."""

    def __init__(self, size: int = 1024) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self.size = size

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)


@subscriptions.get("/dapr/subscribe", include_in_schema=False)
async def dapr_subscriptions(settings: SettingsDep) -> list[dict[str, str]]:
    return [
        {
            "pubsubname": settings.pubsub_name,
            "topic": str(Topic.MODEL_PROMOTED),
            "route": "/events/model-promoted",
            "deadLetterTopic": str(Topic.DEAD_LETTER),
        }
    ]


@subscriptions.post("/events/model-promoted", include_in_schema=False)
async def on_model_promoted(event: CloudEvent, request: Request, models: ModelsDep) -> DeliveryAnswer:
    seen: SeenEvents = request.app.state.seen_events
    if event.id in seen:
        return DeliveryAnswer(status=Delivery.SUCCESS)
    try:
        promoted = PromotedModel.model_validate(event.data)
    except ValueError:
        log.warning("model.promoted event without version and path; dropped", extra={"event_id": event.id})
        return DeliveryAnswer(status=Delivery.DROP)
    if promoted.model is not None and promoted.model != models.settings.model_name:
        seen.add(event.id)
        return DeliveryAnswer(status=Delivery.SUCCESS)  # another model's promotion
    try:
        await models.promote(promoted.path, promoted.version, promoted.model)
    except ModelNotFound:
        # The path will not appear by retrying: dead-letter it rather than loop.
        log.exception("promoted model not found", extra={"event_id": event.id, "path": promoted.path})
        return DeliveryAnswer(status=Delivery.DROP)
    except Exception:
        log.exception("promotion failed; Dapr will redeliver", extra={"event_id": event.id})
        return DeliveryAnswer(status=Delivery.RETRY)
    seen.add(event.id)
    return DeliveryAnswer(status=Delivery.SUCCESS)


@admin.get("/engines", summary="The engine serving new requests and those still draining")
async def engines(models: ModelsDep) -> dict[str, object]:
    def describe(engine) -> dict[str, object]:
        return {"version": engine.version, "active": engine.active, "waiting": engine.waiting}

    current = models.current
    return {
        "current": describe(current) if current is not None else None,
        "draining": [describe(e) for e in models.draining],
        "loading": models.loading,
    }


@admin.post("/promote", summary="Serve another model version now, with no dropped request")
async def promote(body: PromotedModel, models: ModelsDep) -> dict[str, str | bool | None]:
    try:
        result = await models.promote(body.path, body.version, body.model)
    except ModelNotFound as error:
        raise Problem(404, str(error)) from error
    return {"previous": result.previous, "current": result.current, "changed": result.changed}
