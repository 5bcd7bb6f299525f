"""The model registry's answers: models, versions, artifacts, aliases and lineage.

The registry's routes declare these as their request and response models; the shared
`RegistryClient` (genai_platform.registry_client) parses its answers with them; training writes
`Lineage` when it registers a fine-tuned version. Names follow the registry's API (MLflow's
terms: a registered model has numbered versions, aliases point at versions).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MODEL_NAME_RULE = "use 1-100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
ALIAS_RULE = "an alias is 1-50 lowercase letters, digits, '_' or '-', starting with a letter"


def check_alias(alias: str) -> str:
    """`alias` when it is 1-50 of `a-z 0-9 _ -` starting with a letter; ValueError otherwise."""
    if not ALIAS.match(alias):
        raise ValueError(ALIAS_RULE)
    return alias


def now() -> str:
    """The current UTC time as ISO 8601 with milliseconds, as every registry timestamp is written."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Lineage(BaseModel):
    """Where a version came from: enough to rebuild it, or to explain it.

    `base_model`/`base_version` name the registry version it was trained from, `training_job_id`
    the fine-tuning job, `dataset_snapshot_id` the sha256 of the training examples,
    `hyperparameters` the job's settings and `metrics` its figures (losses, perplexities, tokens).
    """

    base_model: str | None = None
    base_version: int | None = Field(None, ge=1)
    training_job_id: str | None = None
    dataset_snapshot_id: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class Artifact(BaseModel):
    """One stored file of a version: `size` in bytes, the sha256 of the whole and of each part (hex)."""

    filename: str
    size: int
    sha256: str
    part_sha256: list[str]


class UploadedPart(BaseModel):
    """One uploaded part of a file: its index, sha256 (hex) and size in bytes."""

    part: int
    sha256: str
    size: int


class NewModel(BaseModel):
    """A model to register: a name (1-100 of `a-z 0-9 . _ -`), a description and tags."""

    name: str
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not MODEL_NAME.match(name):
            raise ValueError(MODEL_NAME_RULE)
        return name


class Model(NewModel):
    """A registered model: the newest version number it gave out and its aliases (alias → version)."""

    created_at: str = Field(default_factory=now)
    latest_version: int = 0
    aliases: dict[str, int] = Field(default_factory=dict)


class NewVersion(BaseModel):
    """A version to add; the registry numbers it."""

    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)


class Version(NewVersion):
    """A numbered version of `model`: `pending` while its files arrive, `ready` (frozen) after.

    `artifacts` maps each file name to its record; only a ready version can carry an alias.
    """

    model: str
    version: int
    status: Literal["pending", "ready"] = "pending"
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    created_at: str = Field(default_factory=now)
    ready_at: str | None = None

    @property
    def files(self) -> dict[str, str]:
        """File name → sha256 (hex) of every stored file."""
        return {name: artifact.sha256 for name, artifact in self.artifacts.items()}


class AliasMove(BaseModel):
    """Point an alias at a version number (1 to 2**31 - 1)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=2**31 - 1)


class FileComplete(BaseModel):
    """An uploader's word that a file is whole: how many parts, and the sha256 (hex) of the whole."""

    parts: int = Field(ge=1, le=100_000)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
