"""Hot swap triggers: the `model.promoted` event and the admin call, both into ModelService."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from genai_platform.dapr import Sidecar
from genai_platform.errors import Problem
from genai_platform.events import CloudEvent, ModelPromoted, Topic
from genai_platform.registry_client import RegistryClient, RegistryError, RegistryNotFound, RegistryUnavailable
from genai_platform.service import SidecarDep
from genai_platform.subscriptions import Subscriptions
from inference.model import ModelNotFound
from inference.registry_source import RegistryNotReady, RegistryRef, fetch_from_registry
from inference.swap import ModelService, Promotion

log = logging.getLogger(__name__)

subscriptions = Subscriptions()
admin = APIRouter(prefix="/admin", tags=["admin"])


class PromotedModel(BaseModel):
    """What the admin call takes (and `model.promoted`, genai_platform.events.ModelPromoted, becomes)
    to find the new version.

    A registry promotion names a model, version and alias, and the files are fetched from the
    registry when this instance serves that model's alias (`INFERENCE_MODEL=registry:...`);
    `path` instead names a Hugging Face folder (or a .gguf file) this service can read, and
    `version` is then any label.
    """

    model_config = ConfigDict(extra="ignore")

    version: str = Field(min_length=1)
    path: str | None = Field(None, min_length=1)
    model: str | None = Field(None, description="The model's name; promotions of other models are ignored.")
    alias: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _number_as_text(cls, version: object) -> object:
        return str(version) if isinstance(version, int) else version


async def serve_promotion(
    models: ModelService, sidecar: Sidecar, promoted: PromotedModel, *, by_alias: bool = True
) -> Promotion | None:
    """Swap to the promoted version when this instance serves it; None when it is not ours.

    With `by_alias`, a registry promotion counts only for the alias this instance follows.
    """
    settings = models.settings
    registry = RegistryRef.parse(settings.model_source)
    if promoted.path is not None:
        ours = {settings.model_name, *([registry.name] if registry else [])}
        if promoted.model is not None and promoted.model not in ours:
            return None
        return await models.promote(promoted.path, promoted.version)
    if registry is None or (promoted.model or registry.name) != registry.name:
        return None
    if by_alias and not registry.follows(promoted.model, promoted.alias):
        return None
    client = RegistryClient(sidecar, settings.registry_app_id)
    folder, number = await fetch_from_registry(client, registry.name, promoted.version, settings.model_cache_dir)
    return await models.promote(str(folder), str(number))


async def withdraw_deleted_alias(models: ModelService, sidecar: Sidecar, removed: ModelPromoted) -> bool:
    """Stop serving the version a deleted alias pointed at, when this instance follows that alias,
    serves that version (a version promoted by hand through /admin/promote is kept) and the
    registry says the alias is gone now; True when it stopped serving it. Every replica then
    agrees with one that starts now, which cannot resolve the alias either.

    Pub/sub does not keep order, and the registry may announce a deletion twice: a deletion that
    arrives after the alias was set again is no reason to stop. So the registry is asked first
    (a 404 means gone), and an alias that exists is followed as a promotion to where it points
    (no change when that is the version served). A registry that cannot answer raises its
    `RegistryUnavailable`: the subscription answers RETRY and Dapr redelivers the event later.
    """
    registry = RegistryRef.parse(models.settings.model_source)
    if registry is None or not registry.follows(removed.model, removed.alias) or removed.previous_version is None:
        return False
    client = RegistryClient(sidecar, models.settings.registry_app_id)
    # The model's aliases, not GET .../versions/<alias>: that one reads `latest` as the newest version.
    try:
        pointed = (await client.get_model(registry.name)).aliases.get(registry.reference)
    except RegistryNotFound:
        pointed = None
    if pointed is None:
        reason = f"alias '{removed.alias}' of model '{removed.model}' was deleted; set it again to serve"
        return await models.withdraw(str(removed.previous_version), reason)
    if models.current is not None and models.current.version == str(pointed):
        return False  # set again to the version served: keep serving it
    log.info(
        "a deleted alias is set again: following it",
        extra={"alias": removed.alias, "model": removed.model, "version": pointed},
    )
    followed = PromotedModel(version=str(pointed), model=registry.name, alias=removed.alias)
    await serve_promotion(models, sidecar, followed)
    return False


async def get_models(request: Request) -> ModelService:
    return request.app.state.models


ModelsDep = Annotated[ModelService, Depends(get_models)]


# The registry's `model.promoted`; a redelivered event (same CloudEvent id) does no second swap.
@subscriptions.subscribe(
    Topic.MODEL_PROMOTED,
    route="/events/model-promoted",
    payload=ModelPromoted,
    dead_letter_topic=Topic.DEAD_LETTER,
    # The path will not appear by retrying: dead-letter it rather than loop. Anything else
    # (a registry that is restarting, a download cut short) is retried.
    drop_on=(ModelNotFound,),
    retry_on=(RegistryUnavailable,),
)
async def on_model_promoted(request: Request, event: CloudEvent, promoted: ModelPromoted) -> None:
    """Swap to the promoted version when this instance serves that model's alias (or path); stop
    serving it when that alias was deleted (`version` null)."""
    if promoted.deleted:
        await withdraw_deleted_alias(request.app.state.models, request.app.state.sidecar, promoted)
        return
    # The engine is labelled with the version as text (a folder's version may be any label).
    wanted = PromotedModel(
        version=str(promoted.version), path=promoted.path, model=promoted.model, alias=promoted.alias
    )
    await serve_promotion(request.app.state.models, request.app.state.sidecar, wanted)


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
async def promote(body: PromotedModel, models: ModelsDep, sidecar: SidecarDep) -> dict[str, str | bool | None]:
    try:
        result = await serve_promotion(models, sidecar, body, by_alias=False)
    except (ModelNotFound, RegistryNotReady, RegistryNotFound) as error:
        raise Problem(404, str(error)) from error
    except RegistryError as error:
        raise Problem(503, "The model registry cannot answer now; try again.", headers={"Retry-After": "5"}) from error
    if result is None:
        raise Problem(422, "Give `path`, or a `version` of the registry model this instance serves.")
    return {"previous": result.previous, "current": result.current, "changed": result.changed}
