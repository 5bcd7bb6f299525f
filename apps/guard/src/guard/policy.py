"""The guard's policy: which rails run on input and on output, their thresholds and actions.

Shipped as `policy.yaml` beside this module; `GUARD_POLICY_PATH` points at another file. The
file is read once at start-up and validated strictly: a typo in a rail's name fails the start,
instead of silently turning that rail off.
"""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from guard.rails.pii import ENTITIES


class Action(StrEnum):
    """What a failed rail does."""

    BLOCK = "block"  # the request or answer is refused
    REDACT = "redact"  # the findings are cut out or masked, the rest goes on
    FLAG = "flag"  # reported (and published), nothing changes


class RailPolicy(BaseModel):
    """One rail's settings: on or off, what it does when it fails, and the score at which it fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    action: Action = Action.BLOCK
    # A rail fails when its score reaches this; detection rails score 1.0 on any finding.
    threshold: float = Field(0.5, gt=0.0, le=1.0)


class InjectionPolicy(RailPolicy):
    """The prompt-injection rail's settings."""

    decode: bool = True  # also scan base64, hex and ROT13 payloads


class PiiPolicy(RailPolicy):
    """The personal-data rail's settings: which kinds it looks for."""

    entities: tuple[str, ...] = ENTITIES


class BlocklistPolicy(RailPolicy):
    """Blocked terms, and denied topics (name -> phrases)."""

    terms: tuple[str, ...] = ()
    topics: dict[str, tuple[str, ...]] = Field(default_factory=dict)


class LengthPolicy(RailPolicy):
    """Length limits: estimated tokens, and optionally characters."""

    max_tokens: int = Field(8192, ge=1)
    max_chars: int | None = Field(None, ge=1)


class ExfiltrationPolicy(RailPolicy):
    """The exfiltration rail's settings: hosts whose images and links may stay."""

    allowed_hosts: tuple[str, ...] = ()


class InputRails(BaseModel):
    """The rails run on what a client sends: every message, whatever its role, and prompt variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unicode: RailPolicy = RailPolicy(action=Action.REDACT)
    injection: InjectionPolicy = InjectionPolicy()
    pii: PiiPolicy = PiiPolicy(action=Action.FLAG)
    secrets: RailPolicy = RailPolicy(action=Action.REDACT)
    blocklist: BlocklistPolicy = BlocklistPolicy()
    length: LengthPolicy = LengthPolicy()
    # No list of roles: every message a client sends is checked, whatever its role (issue 11).


class OutputRails(BaseModel):
    """The rails run on what the model answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unicode: RailPolicy = RailPolicy(action=Action.REDACT)
    pii: PiiPolicy = PiiPolicy(action=Action.REDACT)
    secrets: RailPolicy = RailPolicy(action=Action.REDACT)
    exfiltration: ExfiltrationPolicy = ExfiltrationPolicy(action=Action.REDACT)
    blocklist: BlocklistPolicy = BlocklistPolicy()
    length: LengthPolicy = LengthPolicy(max_tokens=4096)
    json_schema: RailPolicy = RailPolicy()


class Policy(BaseModel):
    """The guard's whole policy (policy.yaml): input and output rails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: InputRails = InputRails()
    output: OutputRails = OutputRails()


DEFAULT_POLICY = "policy.yaml"


def load_policy(path: Path | None = None) -> Policy:
    """The policy in `path`, or the one shipped with the service."""
    if path is None:
        text = resources.files("guard").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return Policy.model_validate(yaml.safe_load(text) or {})
