"""The registry's records in Dapr state: one key per model, one per version, one per uploaded part.

Every change that must be atomic touches one key under its ETag (Redis transactions do not
roll back, see the README), so two concurrent writers never lose an update: the loser re-reads
and tries again.
"""

from __future__ import annotations

import hashlib

from genai_platform.contracts.registry import (
    Artifact,
    Model,
    NewModel,
    NewVersion,
    UploadedPart,
    Version,
    check_alias,
    now,
)
from genai_platform.dapr import Sidecar, with_etag_retries
from registry.artifacts import ArtifactStore, check_filename
from registry.errors import (
    AliasNotFound,
    ChecksumMismatch,
    InvalidAlias,
    ModelExists,
    ModelNotFound,
    PartTooLarge,
    UploadRefused,
    VersionFrozen,
    VersionNotFound,
    VersionNotReady,
    WeightsMissing,
)

MODELS_INDEX = "models"


def model_key(name: str) -> str:
    return f"model:{name}"


def version_key(name: str, version: int) -> str:
    return f"model:{name}:version:{version}"


def part_key(name: str, version: int, filename: str, index: int) -> str:
    return f"upload:{name}:{version}:{filename}:{index}"


def deletion_key(name: str, alias: str) -> str:
    """An alias deletion whose `model.promoted` is not known to be published (registry README)."""
    return f"unannounced:{name}:alias:{alias}"


class Catalog:
    """Models, versions, aliases and uploads in Dapr state.

    Raises the registry's domain errors (registry.errors: `ModelNotFound`, `VersionNotFound`,
    `ModelExists`, `VersionFrozen`, `VersionNotReady`, `UploadRefused`, ...), `ConcurrentUpdate`
    when an ETag race is lost too often, and `DaprError` when the sidecar fails.
    """

    def __init__(self, sidecar: Sidecar, artifacts: ArtifactStore) -> None:
        self._sidecar = sidecar
        self.artifacts = artifacts

    # --- models -------------------------------------------------------------------------------

    async def create_model(self, new: NewModel) -> Model:
        model = Model(**new.model_dump())
        # Check-then-write: two creators of one name at the same instant would both write an
        # empty record, the same one; nothing else can be lost here.
        if await self._sidecar.get_state(model_key(model.name)) is not None:
            raise ModelExists(f"A model named '{model.name}' exists already.")
        await self._sidecar.save_state(model_key(model.name), model.model_dump())

        async def add_to_index() -> None:
            index = await self._sidecar.get_state(MODELS_INDEX)
            names = sorted({*(index.value if index else []), model.name})
            await self._sidecar.save_state(
                MODELS_INDEX, names, etag=index.etag if index else None, concurrency="first-write"
            )

        await with_etag_retries(add_to_index)
        return model

    async def list_models(self) -> list[Model]:
        index = await self._sidecar.get_state(MODELS_INDEX)
        names = index.value if index else []
        found = await self._sidecar.get_bulk_state([model_key(name) for name in names])
        return [Model(**found[model_key(name)]) for name in names if model_key(name) in found]

    async def get_model(self, name: str) -> tuple[Model, str | None]:
        item = await self._sidecar.get_state(model_key(name))
        if item is None:
            raise ModelNotFound(f"There is no model named '{name}'.")
        return Model(**item.value), item.etag

    # --- versions -----------------------------------------------------------------------------

    async def create_version(self, name: str, new: NewVersion) -> Version:
        """Number the version by moving the model's counter under its ETag, then record it."""
        if new.lineage.base_model is not None and new.lineage.base_version is not None:
            await self.get_version(new.lineage.base_model, new.lineage.base_version)

        async def reserve() -> int:
            model, etag = await self.get_model(name)
            model.latest_version += 1
            await self._sidecar.save_state(model_key(name), model.model_dump(), etag=etag, concurrency="first-write")
            return model.latest_version

        number = await with_etag_retries(reserve)
        version = Version(model=name, version=number, **new.model_dump())
        await self._sidecar.save_state(version_key(name, number), version.model_dump())
        return version

    async def get_version(self, name: str, version: int) -> Version:
        version_record, _ = await self._get_version(name, version)
        return version_record

    async def _get_version(self, name: str, version: int) -> tuple[Version, str | None]:
        item = await self._sidecar.get_state(version_key(name, version))
        if item is None:
            raise VersionNotFound(f"Model '{name}' has no version {version}.")
        return Version(**item.value), item.etag

    async def list_versions(self, name: str) -> list[Version]:
        model, _ = await self.get_model(name)
        keys = [version_key(name, n) for n in range(1, model.latest_version + 1)]
        found = await self._sidecar.get_bulk_state(keys)
        # A number reserved by a writer that died before recording its version leaves a gap.
        return [Version(**found[key]) for key in keys if key in found]

    async def resolve(self, name: str, reference: str) -> Version:
        """A version by number, by alias, or `latest` (the newest ready one)."""
        if reference.isdigit():
            return await self.get_version(name, int(reference))
        model, _ = await self.get_model(name)
        if reference in model.aliases:
            return await self.get_version(name, model.aliases[reference])
        if reference == "latest":
            ready = [v for v in await self.list_versions(name) if v.status == "ready"]
            if ready:
                return ready[-1]
            raise VersionNotFound(f"Model '{name}' has no ready version yet.")
        raise VersionNotFound(f"Model '{name}' has no alias '{reference}'.")

    # --- artifacts ----------------------------------------------------------------------------

    async def upload_part(self, name: str, number: int, filename: str, index: int, data: bytes) -> UploadedPart:
        check_filename(filename)
        version = await self.get_version(name, number)
        if version.status == "ready":
            raise VersionFrozen(f"Version {number} of '{name}' is ready, so its files are immutable.")
        if not 0 <= index < 100_000:
            raise UploadRefused("A part index is between 0 and 99999.")
        if len(data) > self.artifacts.part_size:
            raise PartTooLarge(
                f"A part holds at most {self.artifacts.part_size} bytes; split the file.",
                part_size=self.artifacts.part_size,
            )
        sha256 = await self.artifacts.write_part(name, number, filename, index, data)
        await self._sidecar.save_state(part_key(name, number, filename, index), {"sha256": sha256, "size": len(data)})
        return UploadedPart(part=index, sha256=sha256, size=len(data))

    async def complete_file(self, name: str, number: int, filename: str, parts: int, sha256: str) -> Artifact:
        """Check the uploaded parts against the uploader's sha256, then record the file."""
        check_filename(filename)
        keys = [part_key(name, number, filename, i) for i in range(parts)]
        found = await self._sidecar.get_bulk_state(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            raise UploadRefused(f"Parts {missing[:10]} of '{filename}' were never uploaded.", missing_parts=missing)
        sizes = [found[key]["size"] for key in keys]
        if any(size != self.artifacts.part_size for size in sizes[:-1]):
            raise UploadRefused(f"Every part but the last must hold exactly {self.artifacts.part_size} bytes.")
        artifact = Artifact(
            filename=filename,
            size=sum(sizes),
            sha256=sha256.lower(),
            part_sha256=[found[key]["sha256"] for key in keys],
        )
        whole = hashlib.sha256()
        async for chunk in self.artifacts.read(
            name, number, artifact.model_copy(update={"sha256": ""}), verify_whole=False
        ):
            whole.update(chunk)
        if whole.hexdigest() != artifact.sha256:
            raise ChecksumMismatch(
                f"The parts of '{filename}' do not hash to the sha256 given ({whole.hexdigest()} was stored)."
            )

        async def record() -> None:
            version, etag = await self._get_version(name, number)
            if version.status == "ready":
                raise VersionFrozen(f"Version {number} of '{name}' is ready, so its files are immutable.")
            version.artifacts[filename] = artifact
            await self._sidecar.save_state(
                version_key(name, number), version.model_dump(), etag=etag, concurrency="first-write"
            )

        await with_etag_retries(record)
        for key in keys:
            await self._sidecar.delete_state(key)
        return artifact

    async def mark_ready(self, name: str, number: int) -> Version:
        """Freeze a version once its files are in; only then can an alias point at it."""

        async def freeze() -> Version:
            version, etag = await self._get_version(name, number)
            if not any(f.endswith(".safetensors") for f in version.artifacts):
                raise WeightsMissing("A version needs its weights (a .safetensors file) before it is ready.")
            if version.status != "ready":
                version.status, version.ready_at = "ready", now()
                await self._sidecar.save_state(
                    version_key(name, number), version.model_dump(), etag=etag, concurrency="first-write"
                )
            return version

        return await with_etag_retries(freeze)

    # --- aliases ------------------------------------------------------------------------------

    async def move_alias(self, name: str, alias: str, number: int) -> tuple[Model, int | None]:
        """Point `alias` at a ready version; returns the model and the version it pointed at before."""
        try:
            check_alias(alias)
        except ValueError as error:
            raise InvalidAlias(str(error)) from error
        version = await self.get_version(name, number)
        if version.status != "ready":
            raise VersionNotReady(f"Version {number} of '{name}' is not ready; complete its files first.")

        async def move() -> tuple[Model, int | None]:
            model, etag = await self.get_model(name)
            previous = model.aliases.get(alias)
            model.aliases[alias] = number
            await self._sidecar.save_state(model_key(name), model.model_dump(), etag=etag, concurrency="first-write")
            return model, previous

        return await with_etag_retries(move)

    async def delete_alias(self, name: str, alias: str) -> tuple[Model, int]:
        """Remove `alias` under the model's ETag; returns the model and the version it pointed at.

        Raises `ModelNotFound`, or `AliasNotFound` when the model has no such alias (also for the
        loser of two deletes of one alias: it re-reads and finds it gone).
        """

        async def remove() -> tuple[Model, int]:
            model, etag = await self.get_model(name)
            if alias not in model.aliases:
                raise AliasNotFound(f"Model '{name}' has no alias '{alias}'.")
            previous = model.aliases.pop(alias)
            # Recorded before the alias goes, so no deletion is ever left unannounced: the record
            # stays until `announced_deletion` (after the publish), and a stale one (this write lost
            # its race) only makes a later DELETE announce the deletion once more.
            await self._sidecar.save_state(deletion_key(name, alias), {"previous_version": previous})
            await self._sidecar.save_state(model_key(name), model.model_dump(), etag=etag, concurrency="first-write")
            return model, previous

        return await with_etag_retries(remove)

    async def unannounced_deletion(self, name: str, alias: str) -> int | None:
        """The version a deleted `alias` pointed at when its `model.promoted` may not have been
        published (the publish failed, or the registry stopped first); None otherwise."""
        item = await self._sidecar.get_state(deletion_key(name, alias))
        return int(item.value["previous_version"]) if item is not None else None

    async def announced_deletion(self, name: str, alias: str) -> None:
        """Forget the record of `alias`'s deletion: its `model.promoted` was published."""
        await self._sidecar.delete_state(deletion_key(name, alias))
