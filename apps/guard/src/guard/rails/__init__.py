"""Rails: each module scans text for one kind of risk and reports findings with positions.

A rail never decides what happens; the policy does (block, redact or flag). Findings carry
positions and kinds, never the matched text, so they can be logged and published safely.

Streaming: every output rail also declares `unsettled(text, ...) -> int`, where the shortest tail
of `text` that more text could still turn into (part of) a finding starts (`len(text)` when none
could). A stream releases text only before the earliest of these (guard.streaming), so a rail
that declares its tail truthfully sees streamed text exactly as it sees the whole answer. Rails
built on regular expressions derive their tail from their own patterns (`unsettled_start`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import regex


@dataclass(frozen=True, slots=True)
class Finding:
    """One risky span of the scanned text: its `kind` (e.g. "email", "tag_characters"), the
    character offsets [start, end), a `score` in [0, 1], what redaction puts there, and a `detail`
    that never quotes the text."""

    kind: str
    start: int
    end: int
    score: float = 1.0
    # What redaction puts in place of [start, end); None means a `[REDACTED:KIND]` marker.
    replacement: str | None = None
    detail: str = ""
    # A limit the text is over (the length rail's): the policy setting's name and its value.
    limit: str | None = None
    limit_value: int | None = None


@dataclass(frozen=True, slots=True)
class Scan:
    """One rail's answer: a score in [0, 1] and what it found."""

    score: float = 0.0
    findings: tuple[Finding, ...] = field(default_factory=tuple)


CLEAN = Scan()


def combined_score(scores: Iterable[float]) -> float:
    """Independent signals: the chance that at least one of them is right."""
    miss = 1.0
    for score in scores:
        miss *= 1.0 - min(max(score, 0.0), 1.0)
    return round(1.0 - miss, 4)


def drop_overlaps(findings: Iterable[Finding], priority: dict[str, int] | None = None) -> list[Finding]:
    """Keep one finding per stretch of text: the higher priority kind, then the longer span."""
    priority = priority or {}
    ranked = sorted(findings, key=lambda f: (-priority.get(f.kind, 0), -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: Iterable[Finding]) -> str:
    """`text` with each finding's span replaced, right to left so positions stay valid."""
    out = text
    for finding in sorted(drop_overlaps(findings), key=lambda f: f.start, reverse=True):
        replacement = finding.replacement if finding.replacement is not None else f"[REDACTED:{finding.kind.upper()}]"
        out = out[: finding.start] + replacement + out[finding.end :]
    return out


# Characters that, ending a token, end the sentence or the markdown emphasis around it instead:
# GFM's autolink extension trims the same from the end of a URL (GitHub Flavored Markdown spec,
# 6.9 "Autolinks (extension)": `?`, `!`, `.`, `,`, `:`, `*`, `_`, `~`), `;` ends a clause and a
# backtick the code span around it.
TRAILING_PUNCTUATION = "?!.,:;*_~`"
# A URL's scheme and `//` (RFC 3986 section 3.1), and the characters its userinfo may hold (3.2.1:
# unreserved, pct-encoded, sub-delims) less the sub-delims that end a URL in prose and markup
# (`'`, `(`, `)`, `,`, `;`): after `"https://acme.com","` or `[docs](https://x.example)` an address
# is an address (a review). Without `:`, which parts the user from the password. For a character
# class: `[{USERINFO_CHARS}:]`. The PII rail's e-mail exception and the secrets rail's
# `url_credentials` read userinfo alike.
URL_SCHEME = r"[a-zA-Z][a-zA-Z0-9+.-]{1,20}://"
USERINFO_CHARS = r"A-Za-z0-9._~%!$&*+=\-"
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def token_end(text: str, start: int, end: int, punctuation: str = TRAILING_PUNCTUATION, trim: str | None = None) -> int:
    """The end of the token that a pattern matched as `text[start:end]`, without what surrounds
    it: the token stops before a closing bracket it did not open when only closing brackets and
    `punctuation` follow it in the match (`(password=x)`, the `)` closing a link's URL, `...).`), or
    when it is a `]` that opens a link's URL (the `](url)` after a link's text, when the token is
    inside one: `[password=x](url)`), and it loses its
    trailing `punctuation` (`...?token=x.`). Redacting the whole match would drop that text from
    the answer. A closing bracket inside the token (`password=P@ss)w0rd!23`) is the token's own:
    stopping there would leave the rest of a secret out of the redaction. `trim` (default:
    `punctuation`) is what the end loses; a secret's value loses only a code span's backtick,
    since its last `!` or `.` is as likely its own as the sentence's (`password=Summer2024!`)."""
    depth = dict.fromkeys(_CLOSERS.values(), 0)
    for i in range(start, end):
        char = text[i]
        if char in depth:
            depth[char] += 1
        elif char in _CLOSERS:
            if depth[_CLOSERS[char]]:
                depth[_CLOSERS[char]] -= 1
                continue
            # `](` ends a link's text only inside one: `password=ab](cd...` alone is one value.
            opens_url = char == "]" and text[i + 1 : i + 2] == "(" and _in_brackets(text, start)
            if opens_url or all(c in _CLOSERS or c in punctuation for c in text[i:end]):
                end = i
                break
    trim = punctuation if trim is None else trim
    while end > start and text[end - 1] in trim:
        end -= 1
    return end


def _in_brackets(text: str, start: int) -> bool:
    """Whether `text[start]` lies inside square brackets opened before it (a markdown link's text,
    nested brackets balanced as CommonMark balances them)."""
    depth = 0
    for char in text[:start]:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
    return depth > 0


# How far past a match's end its trailing lookahead or `\b` may read (the phone pattern's
# `(?![.\-/]\d)` reads two characters): a match ending this close to the end of the text could
# still be undone by what comes next.
LOOKAHEAD_REACH = 2


def partial_patterns(patterns: Iterable[re.Pattern[str]]) -> tuple[regex.Pattern[str], ...]:
    """The same patterns compiled with `regex`, whose matching can stop at the end of the text
    and report a partial match (a match that more text could complete)."""
    flags = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE
    return tuple(regex.compile(p.pattern, p.flags & flags) for p in patterns)


def unsettled_start(patterns: Sequence[regex.Pattern[str]], text: str) -> int:
    """Where the earliest match of any pattern that more text could still change starts: a
    partial match (it ran into the end of `text`) or a match ending within `LOOKAHEAD_REACH` of
    it (what it reads past its end is not there yet). `len(text)` when no match is open."""
    start = len(text)
    for pattern in patterns:
        # Overlapped: every start position is tried, so a match hidden inside an earlier,
        # settled one is still seen. Matches come left to right: the first open one is the earliest.
        for match in pattern.finditer(text, overlapped=True, partial=True):
            if match.start() >= start:
                break
            if match.end() > match.start() and (match.partial or match.end() + LOOKAHEAD_REACH > len(text)):
                start = match.start()
                break
    return start
