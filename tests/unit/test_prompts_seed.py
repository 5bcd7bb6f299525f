"""The `rag-answer` prompt seeded at prompts' first start, against the one fake sidecar."""

from __future__ import annotations

import asyncio

from fakes import FakeDapr, interleaved
from gateway.chat import BUILTIN_SYSTEM_PROMPT
from prompts.seed import rag_answer_draft, seed_rag_prompt
from prompts.store import PromptStore, head_key
from prompts.templates import Message, VersionDraft, compile_version, render

NAME = "rag-answer"


def test_the_seeded_prompt_renders_exactly_the_gateways_built_in_grounding() -> None:
    store = PromptStore(FakeDapr().sidecar("prompts"))

    async def scenario():
        assert await seed_rag_prompt(store, NAME) is True
        return await store.get_prompt(NAME), await store.get_version(NAME, "production")

    head, version = asyncio.run(scenario())
    assert head["labels"] == {"production": 1, "latest": 1}
    context = "[1] Handbook: The launch site is Kourou.\n\n[2] FAQ: Launches are at dawn."
    messages = render(compile_version(version), {"question": "Where?", "context": context})
    # What the gateway sent before the prompt existed, so grounded answers stay the same.
    assert messages == [
        {"role": "system", "content": BUILTIN_SYSTEM_PROMPT.format(context=context)},
        {"role": "user", "content": "Where?"},
    ]


def test_seeding_again_changes_nothing_and_keeps_an_operators_versions() -> None:
    dapr = FakeDapr()
    store = PromptStore(dapr.sidecar("prompts"))
    mine = VersionDraft(messages=[Message(role="user", content="{{ question }}")], labels=["production"])

    async def scenario():
        await seed_rag_prompt(store, NAME)
        await store.create_version(NAME, mine)
        again = await seed_rag_prompt(store, NAME)
        return again, await store.get_prompt(NAME), await store.list_versions(NAME)

    again, head, versions = asyncio.run(scenario())
    assert again is False
    assert head["labels"] == {"production": 2, "latest": 2} and [v["version"] for v in versions] == [1, 2]


def test_replicas_starting_together_seed_one_version() -> None:
    dapr = interleaved(FakeDapr())
    replicas = [PromptStore(dapr.sidecar("prompts")) for _ in range(3)]

    async def scenario():
        seeded = await asyncio.gather(*(seed_rag_prompt(store, NAME) for store in replicas))
        return seeded, await replicas[0].get_prompt(NAME), await replicas[0].list_versions(NAME)

    seeded, head, versions = asyncio.run(scenario())
    assert seeded.count(True) == 1
    assert [v["version"] for v in versions] == [1] and head["labels"] == {"production": 1, "latest": 1}


def test_a_seed_cut_short_after_the_head_is_completed_on_the_next_start() -> None:
    dapr = FakeDapr()
    store = PromptStore(dapr.sidecar("prompts"))

    async def crash_after_head():
        # What create_prompt writes first: the head, pointing at no version yet.
        head = {"name": NAME, "description": "", "created_at": "t", "updated_at": "t"}
        await store._create(head_key(NAME), {**head, "latest": 0, "next": 2, "labels": {}})

    async def scenario():
        await crash_after_head()
        assert await seed_rag_prompt(store, NAME) is True
        return await store.get_prompt(NAME), await store.get_version(NAME, "production"), await store.list_prompts()

    head, version, listed = asyncio.run(scenario())
    assert head["latest"] == 1 and head["labels"] == {"production": 1, "latest": 1}
    assert version["messages"] == rag_answer_draft().model_dump(mode="json")["messages"]
    assert [p["name"] for p in listed] == [NAME]
