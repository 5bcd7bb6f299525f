"""The registry's and the prompt store's conflict paths, against the one fake sidecar (tests/fakes.py).

Concurrent writers race on one key under its ETag: the loser re-reads and applies again, so no
update is lost; refusals are the stores' domain errors, never HTTP problems.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from fakes import FakeDapr, interleaved
from genai_platform.contracts.registry import Artifact, NewModel, NewVersion
from genai_platform.errors import ConcurrentUpdate
from prompts.errors import LabelMoved, LabelReserved, PromptExists, PromptNotFound, PromptVersionNotFound
from prompts.store import PromptStore
from prompts.templates import Message, VersionDraft
from registry.artifacts import ArtifactStore
from registry.catalog import Catalog, version_key
from registry.errors import AliasNotFound, InvalidAlias, ModelExists, ModelNotFound, VersionNotFound, VersionNotReady


def run(work):
    return asyncio.run(work)


def writes_of(dapr: FakeDapr, key: str) -> int:
    """How many state writes of `key` the sidecar was asked for (lost races included)."""
    return sum(
        1
        for r in dapr.requests
        if r.method == "POST" and r.url.path.endswith("/statestore") and json.loads(r.content)[0]["key"] == key
    )


def catalog(dapr: FakeDapr) -> Catalog:
    sidecar = dapr.sidecar("registry")
    return Catalog(sidecar, ArtifactStore(sidecar, "blobs", 1024))


async def ready_version(registry: Catalog, dapr: FakeDapr, name: str) -> int:
    """A version with weights recorded (as `complete_file` leaves it), made ready."""
    version = await registry.create_version(name, NewVersion())
    weights = Artifact(filename="model.safetensors", size=4, sha256="a" * 64, part_sha256=["a" * 64])
    version.artifacts[weights.filename] = weights
    await registry._sidecar.save_state(version_key(name, version.version), version.model_dump())
    await registry.mark_ready(name, version.version)
    return version.version


@pytest.mark.parametrize("store", ["redis", "postgresql"])
def test_concurrent_versions_get_distinct_numbers_and_concurrent_alias_moves_all_land(store: str) -> None:
    dapr = interleaved(FakeDapr(store))
    registry = catalog(dapr)

    async def scenario():
        await registry.create_model(NewModel(name="chat"))
        numbers = await asyncio.gather(*(registry.create_version("chat", NewVersion()) for _ in range(8)))
        for number in (1, 2):
            version = await registry.get_version("chat", number)
            version.artifacts["model.safetensors"] = Artifact(
                filename="model.safetensors", size=4, sha256="a" * 64, part_sha256=["a" * 64]
            )
            await registry._sidecar.save_state(version_key("chat", number), version.model_dump())
            await registry.mark_ready("chat", number)
        aliases = ["production", "staging", "canary", "shadow", "nightly"]
        await asyncio.gather(*(registry.move_alias("chat", alias, 1 + i % 2) for i, alias in enumerate(aliases)))
        return sorted(v.version for v in numbers), (await registry.get_model("chat"))[0]

    numbers, model = run(scenario())
    assert numbers == list(range(1, 9))
    assert model.latest_version == 8
    assert model.aliases == {"production": 1, "staging": 2, "canary": 1, "shadow": 2, "nightly": 1}
    # One create, 8 numbers and 5 moves need 14 writes of the model's key; more means races were
    # lost (409 on the stale ETag) and applied again, which is the path under test.
    assert writes_of(dapr, "model:chat") > 14


def test_registry_refusals_are_domain_errors() -> None:
    dapr = FakeDapr()
    registry = catalog(dapr)

    async def scenario():
        await registry.create_model(NewModel(name="chat"))
        with pytest.raises(ModelExists):
            await registry.create_model(NewModel(name="chat"))
        pending = await registry.create_version("chat", NewVersion())
        with pytest.raises(VersionNotReady) as not_ready:
            await registry.move_alias("chat", "production", pending.version)
        with pytest.raises(InvalidAlias):
            await registry.move_alias("chat", "Not An Alias", pending.version)
        with pytest.raises(VersionNotFound) as no_alias:
            await registry.resolve("chat", "production")
        with pytest.raises(VersionNotFound):
            await registry.resolve("chat", "latest")
        return not_ready.value, no_alias.value

    not_ready, no_alias = run(scenario())
    assert not_ready.status == 409 and "not ready" in not_ready.detail
    assert no_alias.status == 404 and "production" in no_alias.detail


def test_an_alias_move_that_keeps_losing_its_race_gives_up_with_a_conflict(monkeypatch) -> None:
    dapr = FakeDapr()
    registry = catalog(dapr)

    async def scenario():
        await registry.create_model(NewModel(name="chat"))
        number = await ready_version(registry, dapr, "chat")
        real_get = registry.get_model

        async def stale_read(name: str):
            model, _ = await real_get(name)
            return model, "999"  # an ETag some other writer has moved past

        monkeypatch.setattr(registry, "get_model", stale_read)
        await registry.move_alias("chat", "production", number)

    with pytest.raises(ConcurrentUpdate) as gave_up:
        run(scenario())
    assert gave_up.value.status == 409 and gave_up.value.transient
    assert "production" not in dapr.state["model:chat"]["aliases"]


@pytest.mark.parametrize("store", ["redis", "postgresql"])
def test_alias_deletes_racing_moves_lose_no_update_and_a_missing_alias_is_not_found(store: str) -> None:
    dapr = interleaved(FakeDapr(store))
    registry = catalog(dapr)

    async def scenario():
        await registry.create_model(NewModel(name="chat"))
        number = await ready_version(registry, dapr, "chat")
        for alias in ("production", "staging", "canary"):
            await registry.move_alias("chat", alias, number)
        removed = await asyncio.gather(
            registry.delete_alias("chat", "production"),
            registry.delete_alias("chat", "staging"),
            registry.move_alias("chat", "shadow", number),
        )
        return number, removed, (await registry.get_model("chat"))[0]

    number, removed, model = run(scenario())
    assert [previous for _, previous in removed[:2]] == [number, number]
    assert model.aliases == {"canary": number, "shadow": number}  # each racing write landed
    with pytest.raises(AliasNotFound) as missing:
        run(registry.delete_alias("chat", "production"))  # gone already: a second delete is a 404
    assert missing.value.status == 404 and "production" in str(missing.value)
    with pytest.raises(ModelNotFound):
        run(registry.delete_alias("nope", "production"))


def draft(text: str, labels: list[str] | None = None) -> VersionDraft:
    return VersionDraft(messages=[Message(role="user", content=text)], labels=labels or [])


@pytest.mark.parametrize("store", ["redis", "postgresql"])
def test_concurrent_prompt_versions_and_label_moves_lose_nothing(store: str) -> None:
    dapr = interleaved(FakeDapr(store))
    prompts = PromptStore(dapr.sidecar("prompts"))

    async def scenario():
        await prompts.create_prompt("greet", "", draft("Hello {{ name }}"))
        made = await asyncio.gather(
            *(prompts.create_version("greet", draft(f"Hi {i} {{{{ name }}}}")) for i in range(6))
        )
        await asyncio.gather(*(prompts.move_label("greet", f"l{i}", 1 + i) for i in range(6)))
        return sorted(version["version"] for _, version in made), await prompts.get_prompt("greet")

    numbers, head = run(scenario())
    assert numbers == [2, 3, 4, 5, 6, 7]
    assert head["latest"] == 7 and head["labels"]["latest"] == 7
    assert {f"l{i}": 1 + i for i in range(6)}.items() <= head["labels"].items()
    # create + 6 x (reserve + point) + 6 moves = 19 head writes without a race; more were lost and retried.
    assert writes_of(dapr, "prompt:greet") > 19


def test_prompt_refusals_are_domain_errors() -> None:
    dapr = FakeDapr()
    prompts = PromptStore(dapr.sidecar("prompts"))

    async def scenario():
        await prompts.create_prompt("greet", "", draft("Hello", labels=["production"]))
        await prompts.create_version("greet", draft("Hello again"))
        with pytest.raises(PromptExists):
            await prompts.create_prompt("greet", "", draft("Hello"))
        with pytest.raises(LabelMoved) as moved:
            await prompts.move_label("greet", "production", 2, expected=2)
        with pytest.raises(LabelReserved):
            await prompts.move_label("greet", "latest", 1)
        with pytest.raises(LabelReserved):
            await prompts.delete_label("greet", "latest")
        with pytest.raises(PromptVersionNotFound) as no_label:
            await prompts.get_version("greet", "staging")
        with pytest.raises(PromptNotFound):
            await prompts.get_prompt("farewell")
        return moved.value, no_label.value, await prompts.get_prompt("greet")

    moved, no_label, head = run(scenario())
    assert moved.status == 409 and moved.extensions == {"current_version": 1}
    assert no_label.status == 404 and no_label.extensions == {"label": "staging"}
    assert head["labels"]["production"] == 1  # the refused conditional move changed nothing
