"""What Dapr's state stores do with ETags, first-write and transactions, as runnable scenarios.

Each scenario drives a `Sidecar` and returns what it saw; `EXPECTED` says what Redis (the default
profile) and PostgreSQL v2 (rabbitmq-postgres) answer. The same scenarios run against the real
stores through daprd (tests/integration/test_state_and_secrets.py) and against the unit tests'
fake (tests/unit/test_fakes.py), so the fake cannot drift from the stores silently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from genai_platform.dapr import DaprError, Sidecar, StateConflict, StateOperation

# The state stores the profiles use (the type in each profile's statestore.yaml, without `state.`).
STORES = ("redis", "postgresql")

Scenario = Callable[[Sidecar, str], Awaitable[tuple[Any, ...]]]


async def outcome(call: Awaitable[Any]) -> str:
    """'ok', 'conflict' (StateConflict) or 'error <status>' (any other DaprError)."""
    try:
        await call
    except StateConflict:
        return "conflict"
    except DaprError as error:
        return f"error {error.status}"
    return "ok"


async def value(sidecar: Sidecar, key: str) -> Any:
    item = await sidecar.get_state(key)
    return None if item is None else item.value


async def stale_etag(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(key, 1)
    first = await sidecar.get_state(key)
    moved = await outcome(sidecar.save_state(key, 2, etag=first.etag, concurrency="first-write"))
    stale = await outcome(sidecar.save_state(key, 3, etag=first.etag, concurrency="first-write"))
    second = await sidecar.get_state(key)
    return moved, stale, second.value, second.etag != first.etag


async def etag_on_absent_key(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(f"{key}-other", 1)
    etag = (await sidecar.get_state(f"{key}-other")).etag  # a well-formed ETag of this store
    return await outcome(sidecar.save_state(key, 1, etag=etag, concurrency="first-write")), await value(sidecar, key)


async def first_write_without_etag(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    created = await outcome(sidecar.save_state(key, 1, concurrency="first-write"))
    again = await outcome(sidecar.save_state(key, 2, concurrency="first-write"))
    return created, again, await value(sidecar, key)


async def first_write_over_a_last_write_key(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(key, 1)
    return await outcome(sidecar.save_state(key, 2, concurrency="first-write")), await value(sidecar, key)


async def no_etag_overwrites(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(key, 1)
    return await outcome(sidecar.save_state(key, 2)), await value(sidecar, key)


async def last_write_with_stale_etag(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(key, 1)
    stale = (await sidecar.get_state(key)).etag
    await sidecar.save_state(key, 2)
    return await outcome(sidecar.save_state(key, 3, etag=stale, concurrency="last-write")), await value(sidecar, key)


async def malformed_etag(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(key, 1)
    return await outcome(sidecar.save_state(key, 2, etag="not-an-etag")), await value(sidecar, key)


async def deletes(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(key, 1)
    stale = (await sidecar.get_state(key)).etag
    await sidecar.save_state(key, 2)
    with_stale = await outcome(sidecar.delete_state(key, etag=stale))
    still_there = await value(sidecar, key)
    current = (await sidecar.get_state(key)).etag
    with_current = await outcome(sidecar.delete_state(key, etag=current))
    absent_with_etag = await outcome(sidecar.delete_state(key, etag=current))
    absent = await outcome(sidecar.delete_state(key))
    return with_stale, still_there, with_current, await value(sidecar, key), absent_with_etag, absent


async def transaction_with_a_stale_step(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(f"{key}-alias", 1)
    stale = (await sidecar.get_state(f"{key}-alias")).etag
    await sidecar.save_state(f"{key}-alias", 2)
    failed = await outcome(
        sidecar.transact(
            [
                StateOperation("upsert", f"{key}-version", "v3"),
                StateOperation("upsert", f"{key}-alias", 3, etag=stale),
            ]
        )
    )
    return failed, await value(sidecar, f"{key}-version"), await value(sidecar, f"{key}-alias")


async def transaction_applies_every_step(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_state(f"{key}-gone", 1)
    current = (await sidecar.get_state(f"{key}-gone")).etag
    done = await outcome(
        sidecar.transact(
            [
                StateOperation("upsert", f"{key}-new", {"n": 1}),
                StateOperation("delete", f"{key}-gone", etag=current),
            ]
        )
    )
    return done, await value(sidecar, f"{key}-new"), await value(sidecar, f"{key}-gone")


async def bulk_get(sidecar: Sidecar, key: str) -> tuple[Any, ...]:
    await sidecar.save_states([(f"{key}-a", {"n": 1}), (f"{key}-b", [2])])
    found = await sidecar.get_bulk_state([f"{key}-a", f"{key}-b", f"{key}-missing"])
    return tuple(sorted((name.removeprefix(key), data) for name, data in found.items()))


def both(*seen: Any) -> dict[str, tuple[Any, ...]]:
    return {"redis": seen, "postgresql": seen}


# What each store answers, per scenario. Where they differ, the code must not lean on either.
EXPECTED: dict[Scenario, dict[str, tuple[Any, ...]]] = {
    stale_etag: both("ok", "conflict", 2, True),
    # Redis writes an absent key whatever ETag comes with it; PostgreSQL updates existing rows only.
    etag_on_absent_key: {"redis": ("ok", 1), "postgresql": ("conflict", None)},
    # First-write without an ETag is create-only on both (prompts' versions rely on it) ...
    first_write_without_etag: both("ok", "error 500", 1),
    # ... but Redis only guards keys that were written first-write: a last-write key is overwritten.
    first_write_over_a_last_write_key: {"redis": ("ok", 2), "postgresql": ("error 500", 1)},
    no_etag_overwrites: both("ok", 2),
    # Redis ignores the ETag under last-write; PostgreSQL checks any ETag it is given.
    last_write_with_stale_etag: {"redis": ("ok", 3), "postgresql": ("conflict", 2)},
    malformed_etag: both("conflict", 1),
    deletes: {
        "redis": ("conflict", 2, "ok", None, "ok", "ok"),
        "postgresql": ("conflict", 2, "ok", None, "conflict", "ok"),
    },
    # Redis does not roll back: the step without an ETag is written (docs/architecture-notes.md).
    transaction_with_a_stale_step: {"redis": ("conflict", "v3", 2), "postgresql": ("conflict", None, 2)},
    transaction_applies_every_step: both("ok", {"n": 1}, None),
    bulk_get: both(("-a", {"n": 1}), ("-b", [2])),
}


async def run_all(sidecar: Sidecar, prefix: str) -> dict[str, tuple[Any, ...]]:
    """Every scenario's observations, by name; each scenario uses keys under its own prefix."""
    return {scenario.__name__: await scenario(sidecar, f"{prefix}-{scenario.__name__}") for scenario in EXPECTED}


def expected(store: str) -> dict[str, tuple[Any, ...]]:
    """What `run_all` returns against `store` ('redis' or 'postgresql')."""
    return {scenario.__name__: answers[store] for scenario, answers in EXPECTED.items()}
