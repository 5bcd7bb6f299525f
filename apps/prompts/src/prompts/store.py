"""Prompts, their immutable versions and their labels, kept in Dapr state.

State keys (the sidecar prefixes each with the app-id):

- `prompts-index`          {"names": [...]}: Redis and PostgreSQL state cannot list keys.
- `prompt:{name}`          the head: description, `latest` and `next` numbers, every label -> version.
- `prompt:{name}:v:{n}`    version n, written once and never again.

A deleted prompt's head stays as a tombstone (`deleted_at`, and `next`), which every read and
write treats as no prompt at all: a prompt created again under the name numbers its versions on
from `next` (its first version is `first`), so a version number never stands for two texts (a
client or a cache holding version 3 of a name can never be given other text).

Why this shape: a label move is one ETag write of the head, so two concurrent moves cannot lose
an update (the loser re-reads and re-applies). Multi-key ETag transactions are not used: Redis
does not roll back a transaction whose ETag check failed. A version number is reserved by an ETag
write of the head (`next`); the version is then written with Dapr's first-write concurrency and
no ETag, which Redis and PostgreSQL both treat as create-only, so a version key is never
overwritten. A version is written completely before the head points at it, so readers never see
half of one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from genai_platform.dapr import DaprError, Sidecar, StateConflict, StateOperation, with_etag_retries
from prompts.errors import (
    DeletedWhileCreated,
    LabelMoved,
    LabelNotFound,
    LabelReserved,
    PromptExists,
    PromptNotFound,
    PromptVersionNotFound,
)
from prompts.templates import VersionDraft

log = logging.getLogger(__name__)

INDEX_KEY = "prompts-index"
LATEST = "latest"
# Each optimistic-concurrency loop gives up after this many lost races (a 409 to the caller).
MAX_ATTEMPTS = 20
# Version keys deleted per state transaction when a prompt is deleted.
DELETES_PER_TRANSACTION = 100


def head_key(name: str) -> str:
    return f"prompt:{name}"


def version_key(name: str, number: int) -> str:
    return f"prompt:{name}:v:{number}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AlreadyExists(Exception):
    """A create-only write found the key taken."""


class PromptStore:
    """Reads and writes prompts through the sidecar's state API.

    Heads and versions are dicts (shapes in the module docstring). Raises prompts.errors'
    domain errors (`PromptNotFound`, `PromptVersionNotFound`, `PromptExists`, `LabelMoved`, ...),
    `ConcurrentUpdate` after MAX_ATTEMPTS lost ETag races, and `DaprError` when the sidecar fails.
    """

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    # --- writes -------------------------------------------------------------------------------

    async def create_prompt(self, name: str, description: str, draft: VersionDraft) -> tuple[dict, dict]:
        """Make a prompt and its first version (1, or a deleted prompt's `next` for a name used before);
        returns the head and the version. PromptExists when the name is taken, DeletedWhileCreated
        when a delete of the name overtook this create."""
        now = _now()
        head = {"name": name, "description": description, "created_at": now, "updated_at": now}
        head |= {"latest": 0, "next": 2, "labels": {}}  # version 1 is written below
        try:
            # Read first: a refused create-only write is slow (the sidecar's resiliency policy
            # retries it), so only a true race should take that path.
            existing = await self.sidecar.get_state(head_key(name))
            if existing is None:
                await self._create(head_key(name), head)
            elif is_deleted(existing.value):
                head = await self._recreate(name, existing.value, existing.etag, head)
            else:
                raise AlreadyExists(head_key(name))
        except AlreadyExists:
            await self._add_to_index(name)  # heals an index write lost to a crash after the head
            raise PromptExists(f"A prompt named {name!r} already exists.") from None
        version = await self._first_version(name, draft, head.get("first", 1))
        try:
            head = await self._point_to_new(name, version["version"], draft.labels)
        except PromptNotFound:
            # A delete of the name ran between the head's write and this one (a new-user trial's
            # race: a 404 from a create).
            raise DeletedWhileCreated(f"Prompt {name!r} was deleted while it was being created.") from None
        await self._add_to_index(name)
        return head, version

    async def create_version(self, name: str, draft: VersionDraft) -> tuple[dict, dict]:
        """Add the next version of a prompt; returns the head and the version.

        A draft identical to the latest version makes no new version (its labels are still
        applied): a caller's retry of a create that timed out must not add a duplicate.
        """
        head = await self.get_prompt(name)
        if head["latest"]:
            latest = await self.get_version(name, head["latest"], head)
            if _same_content(latest, draft):
                return await self._point_head(name, latest["version"], draft.labels), latest
        number = await self._reserve_number(name)
        version = await self._write_version(name, number, draft)
        head = await self._point_to_new(name, number, draft.labels)
        return head, version

    async def complete_first_version(self, name: str, draft: VersionDraft) -> tuple[dict, dict]:
        """Write the first version of a prompt whose head has none (a create cut short by a crash).

        Safe to race with the create it completes: the first version is written create-only, so one
        writer wins and the other reads the winner's; the head is pointed at it either way.
        Returns the head and the version; PromptNotFound when there is no head at all, or when the
        prompt was deleted (and perhaps created again) meanwhile.
        """
        first = (await self.get_prompt(name)).get("first", 1)
        version = await self._first_version(name, draft, first)
        head = await self._point_to_new(name, first, draft.labels)
        await self._add_to_index(name)
        return head, version

    async def delete_prompt(self, name: str) -> None:
        """Delete a prompt, every version and label.

        One ETag write turns the head into a tombstone (module docstring): from then on every
        read and write of the prompt is a PromptNotFound, and no writer can take a version number
        (a create racing the delete either took its number before, and the tombstone keeps the
        numbers after it, or gets a 404). Then the versions' keys are deleted, and the name leaves
        the index. PromptNotFound when there is no such prompt; when its tombstone is there, the
        cleanup runs again first (idempotent), so a client that retries a delete that failed after
        the tombstone (a 5xx) gets it finished, and a 404. The next create of the name cleans up too.
        Cost: every number the name ever had, once per delete and per re-create.
        """

        def bury(head: dict) -> dict:
            first = head.get("first", 1)
            return {
                "name": name,
                "created_at": head["created_at"],
                "deleted_at": _now(),
                "first": first,
                "next": max(head.get("next", first), head["latest"] + 1),
                "latest": 0,
                "labels": {},
            }

        try:
            tombstone = await self._update_head(name, bury)
        except PromptNotFound:
            item = await self.sidecar.get_state(head_key(name))
            if item is not None and is_deleted(item.value):
                await self._clean_up_deleted(name, item.value)
            raise
        await self._clean_up_deleted(name, tombstone)

    async def move_label(self, name: str, label: str, number: int, expected: int | None = None) -> dict:
        """Point `label` at version `number`; with `expected`, only if it still points there."""
        if label == LATEST:
            raise LabelReserved("`latest` is kept by the service and cannot be moved.")
        await self.get_version(name, number)  # 404 for a version that does not exist

        def move(head: dict) -> dict:
            _check_own(name, head, number)
            current = head["labels"].get(label)
            if expected is not None and current != expected:
                raise LabelMoved(
                    f"Label {label!r} points at version {current}, not {expected}.", current_version=current
                )
            head["labels"][label] = number
            return head

        return await self._update_head(name, move)

    async def delete_label(self, name: str, label: str) -> dict:
        if label == LATEST:
            raise LabelReserved("`latest` is kept by the service and cannot be removed.")

        def remove(head: dict) -> dict:
            if label not in head["labels"]:
                raise LabelNotFound(f"Prompt {name!r} has no label {label!r}.")
            del head["labels"][label]
            return head

        return await self._update_head(name, remove)

    # --- reads --------------------------------------------------------------------------------

    async def list_prompts(self) -> list[dict]:
        index = await self.sidecar.get_state(INDEX_KEY)
        names = sorted(index.value["names"]) if index else []
        heads = await self._bulk_get([head_key(n) for n in names])
        # A name whose delete stopped before it left the index has a tombstone: no prompt.
        return [head for head in heads if head is not None and not is_deleted(head)]

    async def get_prompt(self, name: str) -> dict:
        return (await self._head_item(name)).value

    async def get_version(self, name: str, ref: int | str, head: dict | None = None) -> dict:
        """A version by number, or by label (`production`, `latest`, ...), with its labels attached."""
        head = head or await self.get_prompt(name)
        if isinstance(ref, str):
            if ref not in head["labels"]:
                raise PromptVersionNotFound(f"Prompt {name!r} has no version labelled {ref!r}.", label=ref)
            number = head["labels"][ref]
        else:
            number = ref
        # A number below `first` belonged to a deleted prompt of the same name: not this one's.
        item = None if number < head.get("first", 1) else await self.sidecar.get_state(version_key(name, number))
        if item is None:
            raise PromptVersionNotFound(f"Prompt {name!r} has no version {number}.", version=number)
        return with_labels(item.value, head)

    async def list_versions(self, name: str) -> list[dict]:
        head = await self.get_prompt(name)
        numbers = range(head.get("first", 1), head["latest"] + 1)
        versions = await self._bulk_get([version_key(name, n) for n in numbers])
        return [with_labels(v, head) for v in versions if v is not None]

    # --- internals ----------------------------------------------------------------------------

    async def _head_item(self, name: str):
        item = await self.sidecar.get_state(head_key(name))
        if item is None or is_deleted(item.value):
            raise PromptNotFound(f"No prompt named {name!r}.")
        return item

    async def _recreate(self, name: str, tombstone: dict, etag: str | None, head: dict) -> dict:
        """Replace a deleted prompt's tombstone by `head` (a new prompt), numbered on from the
        tombstone's `next`; AlreadyExists when another create replaced it first."""
        first = tombstone["next"]
        await self._delete_versions(name, first)  # what a delete cut short by a crash left
        head = head | {"first": first, "next": first + 1}
        try:
            await self.sidecar.save_state(head_key(name), head, etag=etag, concurrency="first-write")
        except StateConflict:
            raise AlreadyExists(head_key(name)) from None
        return head

    async def _clean_up_deleted(self, name: str, tombstone: dict) -> None:
        """What a delete does after its tombstone: the versions' keys go, and the name leaves the index."""
        await self._delete_versions(name, tombstone["next"])
        await self._remove_from_index(name)

    async def _delete_versions(self, name: str, below: int) -> None:
        """Delete the keys of versions 1 to `below` - 1 (those that are not there cost nothing)."""
        keys = [version_key(name, n) for n in range(1, below)]
        for start in range(0, len(keys), DELETES_PER_TRANSACTION):
            chunk = keys[start : start + DELETES_PER_TRANSACTION]
            await self.sidecar.transact(StateOperation("delete", key) for key in chunk)

    async def _reserve_number(self, name: str) -> int:
        """Take the next version number with one ETag write of the head.

        Reserving first (rather than racing create-only writes of version keys) keeps a lost
        race cheap: an ETag conflict is answered at once, while a refused create-only write is
        retried by the sidecar's resiliency policy for seconds. A crash after reserving leaves a
        gap in the numbers, never two versions with one number.
        """
        reserved: list[int] = []

        def reserve(head: dict) -> dict:
            number = max(head.get("next", 1), head["latest"] + 1)
            reserved[:] = [number]
            head["next"] = number + 1
            return head

        await self._update_head(name, reserve)
        return reserved[0]

    async def _first_version(self, name: str, draft: VersionDraft, number: int) -> dict:
        """Write the first version (`number`: 1, or a re-created prompt's `first`) create-only;
        when a racing writer was first, theirs is that version."""
        try:
            return await self._write_version(name, number, draft)
        except AlreadyExists:
            item = await self.sidecar.get_state(version_key(name, number))
            assert item is not None  # a create-only write was refused because the key is there
            return item.value

    async def _write_version(self, name: str, number: int, draft: VersionDraft) -> dict:
        body = draft.model_dump(mode="json", exclude={"labels"}, exclude_none=True)
        version = {"name": name, "version": number, **body, "created_at": _now()}
        await self._create(version_key(name, number), version)
        return version

    async def _point_head(self, name: str, number: int, labels: list[str]) -> dict:
        def point(head: dict) -> dict:
            _check_own(name, head, number)
            # max(): a slower writer of an older number must not move `latest` backwards.
            head["latest"] = max(head["latest"], number)
            head["labels"][LATEST] = head["latest"]
            for label in labels:
                head["labels"][label] = number
            return head

        return await self._update_head(name, point)

    async def _point_to_new(self, name: str, number: int, labels: list[str]) -> dict:
        """`_point_head` for a version this caller has just written: when the prompt is gone (deleted,
        perhaps created again under the name), the key is deleted again, so no text outlives it."""
        try:
            return await self._point_head(name, number, labels)
        except PromptNotFound:
            await self.sidecar.delete_state(version_key(name, number))
            raise

    async def _update_head(self, name: str, change: Callable[[dict], dict]) -> dict:
        """Read-modify-write of the head under its ETag; a lost race re-reads and re-applies."""

        async def attempt() -> dict:
            item = await self._head_item(name)
            head = change(dict(item.value, labels=dict(item.value["labels"])))
            head["updated_at"] = _now()
            await self.sidecar.save_state(head_key(name), head, etag=item.etag, concurrency="first-write")
            return head

        return await with_etag_retries(attempt, MAX_ATTEMPTS)

    async def _add_to_index(self, name: str) -> None:
        async def attempt() -> None:
            item = await self.sidecar.get_state(INDEX_KEY)
            if item is None:
                try:
                    await self._create(INDEX_KEY, {"names": [name]})
                except AlreadyExists as error:
                    # Another writer created the index first: a lost race like a stale ETag.
                    raise StateConflict(409, "ERR_STATE_SAVE", "the index was created concurrently") from error
                return
            if name in item.value["names"]:
                return
            names = [*item.value["names"], name]
            await self.sidecar.save_state(INDEX_KEY, {"names": names}, etag=item.etag, concurrency="first-write")

        await with_etag_retries(attempt, MAX_ATTEMPTS)

    async def _remove_from_index(self, name: str) -> None:
        async def attempt() -> None:
            item = await self.sidecar.get_state(INDEX_KEY)
            if item is None or name not in item.value["names"]:
                return
            names = [n for n in item.value["names"] if n != name]
            await self.sidecar.save_state(INDEX_KEY, {"names": names}, etag=item.etag, concurrency="first-write")

        await with_etag_retries(attempt, MAX_ATTEMPTS)
        # A create of the name may have written its head and found the name still listed before
        # this removal: a live head puts it back.
        head = await self.sidecar.get_state(head_key(name))
        if head is not None and not is_deleted(head.value):
            await self._add_to_index(name)

    async def _create(self, key: str, value: Any) -> None:
        """Write `key` only if it does not exist (first-write with no ETag is create-only)."""
        try:
            await self.sidecar.save_state(key, value, concurrency="first-write")
        except DaprError as error:
            # The stores say "taken" in words of their own (Redis: "failed to set key", PostgreSQL:
            # "no item was updated"); the key being there now is what tells a lost race from a failure.
            if error.code == "ERR_STATE_SAVE" and await self.sidecar.get_state(key) is not None:
                raise AlreadyExists(key) from None
            raise

    async def _bulk_get(self, keys: list[str]) -> list[Any]:
        if not keys:
            return []
        response = await self.sidecar.http.post(
            f"/v1.0/state/{self.sidecar.state_store}/bulk", json={"keys": keys, "parallelism": 8}
        )
        if response.status_code >= 400:
            raise DaprError(response.status_code, "ERR_STATE_BULK_GET", "bulk state read failed")
        by_key = {item["key"]: item.get("data") for item in response.json()}
        return [by_key.get(key) for key in keys]


def _check_own(name: str, head: dict, number: int) -> None:
    """PromptNotFound when version `number` cannot be the head's prompt's: below its `first`, it
    belonged to a deleted prompt of the same name (a writer that began before the delete)."""
    if number < head.get("first", 1):
        raise PromptNotFound(f"No prompt named {name!r} has version {number} any more.")


def is_deleted(head: dict) -> bool:
    """Whether a stored head is a deleted prompt's tombstone."""
    return "deleted_at" in head


def _same_content(version: dict, draft: VersionDraft) -> bool:
    body = draft.model_dump(mode="json", exclude={"labels"}, exclude_none=True)
    stored = {k: v for k, v in version.items() if k not in ("name", "version", "created_at", "labels")}
    return stored == body


def with_labels(version: dict, head: dict) -> dict:
    labels = sorted(label for label, number in head["labels"].items() if number == version["version"])
    return {**version, "labels": labels}
