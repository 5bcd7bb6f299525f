"""Deleting a prompt against writers that began before the delete (the store over tests/fakes.py's
in-memory Dapr, the windows opened by hand): a version number never stands for two texts, no text
of a deleted prompt stays readable or stored, and a live prompt stays listed."""

from __future__ import annotations

import asyncio

import pytest

from fakes import FakeDapr
from prompts.errors import PromptNotFound, PromptVersionNotFound
from prompts.store import PromptStore, version_key
from prompts.templates import Message, VersionDraft


def draft(text: str, labels: tuple[str, ...] = ()) -> VersionDraft:
    return VersionDraft(messages=[Message(role="user", content=text)], labels=list(labels))


def test_a_version_written_for_a_deleted_prompt_never_reaches_the_one_created_again() -> None:
    dapr = FakeDapr()
    store = PromptStore(dapr.sidecar("prompts"))

    async def scenario() -> None:
        await store.create_prompt("p", "", draft("one", ("production",)))
        # A slow create_version took number 2 from the first prompt ...
        number = await store._reserve_number("p")
        await store.delete_prompt("p")
        again, first = await store.create_prompt("p", "", draft("new", ("production",)))
        assert (number, again["first"], first["version"]) == (2, 3, 3)
        # ... and writes its version and points `production` at it only now.
        await store._write_version("p", number, draft("stale writer"))
        with pytest.raises(PromptNotFound):
            await store._point_to_new("p", number, ["production"])
        head = await store.get_prompt("p")
        assert head["labels"] == {"latest": 3, "production": 3}
        assert (await store.get_version("p", "production"))["messages"][0]["content"] == "new"
        with pytest.raises(PromptVersionNotFound):
            await store.get_version("p", 2)
        assert version_key("p", 2) not in dapr.state  # the stale text is not kept either
        with pytest.raises(PromptVersionNotFound):  # nor can a label be moved onto it
            await store.move_label("p", "staging", 2)

    asyncio.run(scenario())


def test_a_seed_completing_a_first_version_of_a_deleted_prompt_changes_nothing() -> None:
    dapr = FakeDapr()
    store = PromptStore(dapr.sidecar("prompts"))

    async def scenario() -> None:
        await store.create_prompt("p", "", draft("one"))
        await store.delete_prompt("p")
        await store.create_prompt("p", "", draft("text A"))  # first = 2
        first = (await store.get_prompt("p"))["first"]  # what complete_first_version reads ...
        await store.delete_prompt("p")
        await store.create_prompt("p", "", draft("text B"))  # first = 3
        await store._first_version("p", draft("seed"), first)  # ... and writes only now
        with pytest.raises(PromptNotFound):
            await store._point_to_new("p", first, ["production"])
        with pytest.raises(PromptVersionNotFound):
            await store.get_version("p", 2)
        assert version_key("p", 2) not in dapr.state
        assert [v["messages"][0]["content"] for v in await store.list_versions("p")] == ["text B"]

    asyncio.run(scenario())


def test_deleting_again_finishes_a_delete_cut_short_after_its_tombstone() -> None:
    dapr = FakeDapr()
    store = PromptStore(dapr.sidecar("prompts"))

    async def scenario() -> None:
        await store.create_prompt("p", "", draft("one"))
        await store.create_version("p", draft("two"))

        async def crash(name: str, below: int) -> None:
            raise ConnectionError("the sidecar went away")

        cleanup, store._delete_versions = store._delete_versions, crash
        with pytest.raises(ConnectionError):
            await store.delete_prompt("p")
        store._delete_versions = cleanup
        assert version_key("p", 1) in dapr.state  # the texts outlived the failed delete
        with pytest.raises(PromptNotFound):  # the client's retry: a 404, and the delete finished
            await store.delete_prompt("p")
        assert [key for key in dapr.state if key.startswith("prompt:p:")] == []
        assert "p" not in dapr.state.get("prompts-index", {}).get("names", [])

    asyncio.run(scenario())


def test_a_prompt_created_again_while_its_name_leaves_the_index_stays_listed() -> None:
    store = PromptStore(FakeDapr().sidecar("prompts"))

    async def scenario() -> None:
        await store.create_prompt("p", "", draft("one"))
        removal = store._remove_from_index

        async def create_first(name: str) -> None:
            # The create lands after the tombstone, while the name is still listed (its own
            # index write changes nothing), then the delete takes the name out.
            await store.create_prompt(name, "", draft("again"))
            await removal(name)

        store._remove_from_index = create_first
        await store.delete_prompt("p")
        assert [head["name"] for head in await store.list_prompts()] == ["p"]
        assert (await store.get_prompt("p"))["first"] == 2

    asyncio.run(scenario())
