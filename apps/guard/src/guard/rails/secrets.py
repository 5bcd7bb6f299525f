"""Credentials: cloud and SaaS API keys, JWTs, private keys, passwords in assignments and URLs.

Vendor formats with a fixed prefix are matched exactly; generic `password = ...` assignments
count only when the value looks random (Shannon entropy), so prose about passwords passes.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from guard.rails import (
    URL_SCHEME,
    USERINFO_CHARS,
    Finding,
    Scan,
    drop_overlaps,
    partial_patterns,
    token_end,
    unsettled_start,
)

VENDOR_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in [
        (
            "private_key",
            # An unterminated block (a truncated answer) is redacted to the end of the text.
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        ),
        ("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b"),
        (
            "aws_secret_access_key",
            r"(?i)\baws_?secret_?(?:access_?)?key\b[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        ),
        ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{60,255})\b"),
        ("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
        ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
        ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"),
        ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}\b"),
        ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}\b"),
        ("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}\b"),
        ("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b"),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
        # User and password in URL userinfo's characters (guard.rails.USERINFO_CHARS), so that JSON
        # such as `"https://acme.com","email":"jane@acme.com"` is no credential; the user may be
        # empty (`redis://:password@host`, Redis's own form).
        (
            "url_credentials",
            rf"\b{URL_SCHEME}[{USERINFO_CHARS}]{{0,64}}:([{USERINFO_CHARS}:]{{3,128}})@",
        ),
        ("bearer_token", r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{20,}=*)"),
    ]
)
_ASSIGNMENT = re.compile(
    r"(?i)\b(?:pass(?:word|wd|phrase)?|pwd|secret|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|client[_-]?secret|"
    r"secret[_-]?key|token)\b[\"']?\s*(?:[:=]|=>)\s*[\"']?([^\s\"',;]{8,})"
)
MIN_VALUE_CHARS = 8  # the shortest assigned value taken for a credential (as `_ASSIGNMENT` reads it)
_ALL_PATTERNS = partial_patterns([*(pattern for _, pattern in VENDOR_PATTERNS), _ASSIGNMENT])
# What a random credential looks like, in bits per character; English words sit near 2.5-3.
MIN_ENTROPY = 3.0


def entropy(value: str) -> float:
    """Shannon entropy of `value`'s characters, in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


# An assigned value of letters alone is taken for a word ("password: required") unless it is at
# least this long: no English word in common use is, a passphrase of words run together is
# (`correcthorsebatterystaple`, 25).
MIN_PASSPHRASE_LETTERS = 20


def _not_a_word(value: str) -> bool:
    return not value.isalpha() or len(value) >= MIN_PASSPHRASE_LETTERS


def scan(text: str) -> Scan:
    """Credentials in `text`: vendor formats (kind named after the format) and `key = value`
    assignments whose value looks random (`generic_secret`, entropy >= MIN_ENTROPY, score 0.8).
    Where a pattern captures the secret part, only that part is the finding, and a value ends
    where its context says (a URL parameter's at `&`; none takes an unopened closing bracket that
    ends its context, or a code span's closing backtick; see `token_end`)."""
    found: list[Finding] = []
    for kind, pattern in VENDOR_PATTERNS:
        for match in pattern.finditer(text):
            # Where the pattern captures a group, only the secret part is redacted.
            start, end = match.span(1) if match.re.groups else match.span()
            if kind == "bearer_token":  # its alphabet (RFC 6750 b64token) has a `.` that may end the sentence
                end = token_end(text, start, end, ".")
            found.append(Finding(kind, start, end))
    for match in _ASSIGNMENT.finditer(text):
        start, end = match.span(1)
        if match.start() and text[match.start() - 1] in "?&":
            # A URL's query parameter: its value ends at the next parameter or the fragment.
            end = min((i for i in (text.find("&", start, end), text.find("#", start, end)) if i != -1), default=end)
        # The value's pattern stops only at whitespace, quotes, `,` and `;`: unquoted, it runs on
        # over a link's closing `)` and the sentence's `.` (`[docs](https://x.example/?token=...).`).
        # A quoted value ends at its quote, whatever its last character.
        quoted = text[start - 1] in "\"'" and end < len(text) and text[end] == text[start - 1]
        if not quoted:
            # Its own last `!` or `.` stays in it: trimmed, `password=Summer2024!` fell under the
            # entropy floor and left whole (a review of the change).
            end = token_end(text, start, end, trim="`")
        value = text[start:end]
        if len(value) >= MIN_VALUE_CHARS and entropy(value) >= MIN_ENTROPY and _not_a_word(value):
            found.append(Finding("generic_secret", start, end, score=0.8))
    priority = {kind: 10 for kind, _ in VENDOR_PATTERNS}  # a named format beats the generic guess
    findings = tuple(drop_overlaps(found, priority))
    return Scan(max((f.score for f in findings), default=0.0), findings)


def unsettled(text: str) -> int:
    """Streaming: where the tail that more text could turn into a credential starts (an open
    private-key block up to its END line, a token prefix, a `password =` still missing its value);
    `len(text)` when there is none. Derived from the rail's own patterns."""
    return unsettled_start(_ALL_PATTERNS, text)
