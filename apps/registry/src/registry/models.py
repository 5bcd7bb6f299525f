"""What the registry records: models, their numbered versions, aliases and lineage."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Lineage(BaseModel):
    """Where a version came from: enough to rebuild it, or to explain it."""

    base_model: str | None = None
    base_version: int | None = Field(None, ge=1)
    training_job_id: str | None = None
    dataset_snapshot_id: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class Artifact(BaseModel):
    filename: str
    size: int
    sha256: str
    part_sha256: list[str]


class NewModel(BaseModel):
    name: str
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError("use 1-100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit")
        return name


class Model(NewModel):
    created_at: str = Field(default_factory=now)
    latest_version: int = 0
    aliases: dict[str, int] = Field(default_factory=dict)


class NewVersion(BaseModel):
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)


class Version(NewVersion):
    model: str
    version: int
    status: Literal["pending", "ready"] = "pending"
    artifacts: dict[str, Artifact] = Field(default_factory=dict)
    created_at: str = Field(default_factory=now)
    ready_at: str | None = None


class AliasMove(BaseModel):
    version: int = Field(ge=1)


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias):
        raise ValueError("an alias is 1-50 lowercase letters, digits, '_' or '-', starting with a letter")
    return alias
