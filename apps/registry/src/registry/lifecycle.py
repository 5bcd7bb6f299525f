"""Version life-cycle steps that also tell the platform: ready → model.registered, alias moved or
deleted → model.promoted.

The API routes and the start-up seed both go through here, so every way a version becomes
ready or an alias moves publishes the same event.
"""

from __future__ import annotations

from genai_platform.contracts.registry import Model, Version
from genai_platform.dapr import Sidecar
from genai_platform.events import ModelPromoted, ModelRegistered, Topic
from registry.catalog import Catalog
from registry.errors import AliasNotFound


async def make_ready(catalog: Catalog, sidecar: Sidecar, name: str, number: int) -> Version:
    version = await catalog.mark_ready(name, number)
    registered = ModelRegistered(model=name, version=number, lineage=version.lineage, files=sorted(version.artifacts))
    await sidecar.publish(Topic.MODEL_REGISTERED, registered.model_dump(mode="json"))
    return version


async def point_alias(catalog: Catalog, sidecar: Sidecar, name: str, alias: str, number: int) -> Model:
    model, previous = await catalog.move_alias(name, alias, number)
    version = await catalog.get_version(name, number)
    promoted = ModelPromoted(
        model=name, version=number, alias=alias, previous_version=previous, files=sorted(version.artifacts)
    )
    # `path` is inference's extension for a folder outside the registry: never sent from here.
    await sidecar.publish(Topic.MODEL_PROMOTED, promoted.model_dump(mode="json", exclude={"path"}))
    return model


async def remove_alias(catalog: Catalog, sidecar: Sidecar, name: str, alias: str) -> None:
    """Delete the alias and publish `model.promoted` with `version` null, so whoever follows the
    alias (inference) stops serving the version it pointed at.

    The deletion is saved first and published second, as a move is. A move's retry publishes
    again (it moves the alias again); a delete's retry would find the alias gone, so the catalog
    keeps a record of each deletion until its event is published: a DELETE of an alias that is
    gone publishes the deletion again (204) while that record is there, and is a 404 once it is
    not. Inference asks the registry before it withdraws a version, so an event sent twice, or
    late, never stops a version that the alias points at again. (Dapr's outbox would publish in
    the state transaction, but it sends every transaction of the shared state store to one topic.)
    """
    try:
        _, previous = await catalog.delete_alias(name, alias)
    except AliasNotFound:
        unannounced = await catalog.unannounced_deletion(name, alias)
        if unannounced is None:
            raise
        previous = unannounced
    removed = ModelPromoted(model=name, version=None, alias=alias, previous_version=previous)
    await sidecar.publish(Topic.MODEL_PROMOTED, removed.model_dump(mode="json", exclude={"path"}))
    await catalog.announced_deletion(name, alias)
