"""The input and output chains: run the enabled rails in order, apply each rail's action.

Rails that rewrite text (unicode clean-up, exfiltration stripping) apply at once, so later rails
see what the model or the user will see; masks from PII and secrets are applied together at the
end. The verdict lists every rail's score and findings; the violation summary drops the text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from guard.policy import Action, Policy, RailPolicy
from guard.rails import Finding, Scan, blocklist, exfiltration, injection, json_schema, length, pii, redact, secrets
from guard.rails import unicode as unicode_rail


class Direction(StrEnum):
    """Which side of the model a text is on: what a user sends, or what the model answers."""

    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class RailVerdict:
    """One rail's outcome on a text: pass or fail (score against threshold), the policy's action
    and the findings (positions and kinds, never the matched text)."""

    rail: str
    passed: bool
    action: Action
    score: float
    threshold: float
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        """The verdict as the guard's API answers it (`verdict`: "pass" or "fail")."""
        return {
            "rail": self.rail,
            "verdict": "pass" if self.passed else "fail",
            "action": str(self.action),
            "score": self.score,
            "threshold": self.threshold,
            "findings": [
                {
                    "kind": f.kind,
                    "start": f.start,
                    "end": f.end,
                    "score": f.score,
                    "detail": f.detail,
                    **({"limit": f.limit, "limit_value": f.limit_value} if f.limit else {}),
                }
                for f in self.findings
            ],
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The whole check of one text: what may go on (cleaned and redacted), every rail's verdict,
    and the rails that blocked it (none when allowed)."""

    direction: Direction
    text: str  # what may go on: cleaned and redacted per the policy
    rails: tuple[RailVerdict, ...]
    blocked_by: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        """No rail blocked the text."""
        return not self.blocked_by

    @property
    def failed(self) -> tuple[RailVerdict, ...]:
        """The rails that failed, whatever their action."""
        return tuple(r for r in self.rails if not r.passed)

    @property
    def changed(self) -> bool:
        """Whether a failed rail redacted the text (so `text` differs from what was checked)."""
        return any(r.action is Action.REDACT for r in self.failed)

    def to_json(self) -> dict[str, Any]:
        """The verdict as the guard's API answers it (`redacted` is `changed`)."""
        return {
            "direction": str(self.direction),
            "allowed": self.allowed,
            "blocked_by": list(self.blocked_by),
            "redacted": self.changed,
            "text": self.text,
            "rails": [r.to_json() for r in self.rails],
        }

    def violation_summary(self) -> list[dict[str, Any]]:
        """The failed rails as kinds and counts, safe to log and publish: no text, no positions."""
        return [
            {
                "rail": r.rail,
                "action": str(r.action),
                "score": r.score,
                "kinds": dict(Counter(f.kind for f in r.findings)),
            }
            for r in self.failed
        ]


class _Run:
    """One pass of a chain over one text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.verdicts: list[RailVerdict] = []
        self.masks: list[Finding] = []

    def record(self, name: str, policy: RailPolicy, scan: Scan) -> RailVerdict:
        passed = scan.score < policy.threshold
        verdict = RailVerdict(name, passed, policy.action, scan.score, policy.threshold, scan.findings)
        self.verdicts.append(verdict)
        return verdict

    def verdict(self, direction: Direction) -> Verdict:
        blocked = tuple(v.rail for v in self.verdicts if not v.passed and v.action is Action.BLOCK)
        text = redact(self.text, self.masks) if self.masks else self.text
        return Verdict(direction, text, tuple(self.verdicts), blocked)

    def mask_if(self, verdict: RailVerdict) -> None:
        if not verdict.passed and verdict.action is Action.REDACT:
            self.masks.extend(verdict.findings)

    def rewrite_if(self, verdict: RailVerdict) -> None:
        """Apply a rewriting rail's replacements now, so later rails scan the result."""
        if not verdict.passed and verdict.action is Action.REDACT:
            self.text = redact(self.text, verdict.findings)


class Guard:
    """The policy's rails, ready to run; pure CPU work, safe to share between requests."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def check_input(self, text: str) -> Verdict:
        """Run the input rails on what a user sends (unicode first: its hidden text feeds injection)."""
        rails = self.policy.input
        run = _Run(text)
        found = unicode_rail.scan(text)
        if rails.unicode.enabled:
            self._clean(run, rails.unicode, found)
        if rails.injection.enabled:
            # Always the clean text: invisible characters split words ("ig\u200bnore") to dodge a match.
            scan = injection.scan(found.sanitized, found.hidden, rails.injection.decode, found.spaced)
            run.record("injection", rails.injection, scan)
        self._common(run, rails.pii, rails.secrets, rails.blocklist, rails.length)
        return run.verdict(Direction.INPUT)

    def check_output(
        self, text: str, *, json_schema: dict[str, Any] | None = None, json_mode: bool = False, streaming: bool = False
    ) -> Verdict:
        """`json_mode` or a `json_schema` turns on the JSON rail; `streaming` checks one sentence."""
        rails = self.policy.output
        run = _Run(text)
        if rails.unicode.enabled:
            self._clean(run, rails.unicode, unicode_rail.scan(text))
        if rails.exfiltration.enabled:
            verdict = run.record(
                "exfiltration", rails.exfiltration, exfiltration.scan(run.text, rails.exfiltration.allowed_hosts)
            )
            run.rewrite_if(verdict)
        self._common(run, rails.pii, rails.secrets, rails.blocklist, None if streaming else rails.length)
        if rails.json_schema.enabled and (json_mode or json_schema is not None) and not streaming:
            run.record("json_schema", rails.json_schema, json_schema_scan(run.text, json_schema))
        return run.verdict(Direction.OUTPUT)

    @staticmethod
    def _clean(run: _Run, policy: RailPolicy, found: unicode_rail.UnicodeScan) -> None:
        run.record("unicode", policy, found.scan)
        if policy.action is Action.REDACT:
            # Cleaning loses nothing legitimate (emoji sequences and flags are kept), so it also
            # applies below the threshold: one stray zero-width space is not worth a violation,
            # but it is still not worth passing on.
            run.text = found.sanitized

    def _common(self, run: _Run, pii_policy, secrets_policy, blocklist_policy, length_policy) -> None:
        if pii_policy.enabled:
            run.mask_if(run.record("pii", pii_policy, pii.scan(run.text, pii_policy.entities)))
        if secrets_policy.enabled:
            run.mask_if(run.record("secrets", secrets_policy, secrets.scan(run.text)))
        if blocklist_policy.enabled:
            found = blocklist.scan(run.text, blocklist_policy.terms, blocklist_policy.topics)
            run.mask_if(run.record("blocklist", blocklist_policy, found))
        if length_policy is not None and length_policy.enabled:
            found = length.scan(run.text, length_policy.max_tokens, length_policy.max_chars)
            run.record("length", length_policy, found)


def json_schema_scan(text: str, schema: dict[str, Any] | None) -> Scan:
    """Whether `text` is JSON matching `schema` (None: any JSON object); see guard.rails.json_schema."""
    return json_schema.scan(text, schema)
