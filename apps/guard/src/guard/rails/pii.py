"""Personal data: e-mail addresses, phone numbers, payment cards, IBANs, SSNs and IP addresses.

Numbers are checked, not only matched: cards pass Luhn, IBANs pass ISO 7064 mod 97, SSNs skip the
ranges never issued, IPs parse. That is what keeps order numbers, dates and versions out.

The patterns read the text with its spacing normalised (`Spacing`): a number wrapped at a line's
end or spaced out ("+1 415 \r\n555 2671", "4111 1111\n1111 1111") reads as written on one line;
a blank line (a paragraph break) still parts two numbers. Positions are the text's own.
"""

from __future__ import annotations

import ipaddress
import math
import re
from bisect import bisect_right
from dataclasses import dataclass, replace

from guard.rails import URL_SCHEME, USERINFO_CHARS, Finding, Scan, drop_overlaps, partial_patterns, unsettled_start

ENTITIES = ("email", "phone", "credit_card", "iban", "ssn", "ip_address")
# When two candidates overlap, the more specific (checked) one names the text.
PRIORITY = {"credit_card": 6, "iban": 5, "ssn": 4, "email": 3, "ip_address": 2, "phone": 1}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
# What comes before a URL's userinfo (RFC 3986 section 3.2.1: `scheme://user@host`, `scheme://user:
# password@host`): `git@github.com` in `ssh://git@github.com/...` and `pw@host` in
# `https://user:pw@host/` read as e-mail addresses, but they are a URL's user and host; taking
# them as one redacted the host with them (the secrets rail masks the password:
# `url_credentials`). `mailto:` has no `//`, so its address stays an e-mail.
# The match may start inside the password (`p!ss@host`: `!` and `$` are userinfo characters the
# e-mail pattern does not take), so userinfo's characters may come between `//` and it
# (guard.rails.USERINFO_CHARS).
_USERINFO_START = re.compile(URL_SCHEME + f"[{USERINFO_CHARS}:]{{0,128}}$")
_PHONE = re.compile(
    r"(?<![\w+.\-/])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?:[\s.-]\d{2,4})?(?![\w]|[.\-/]\d)"
    r"|(?<![\w+])\+\d{8,15}\b"
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Spacing:
    """A text as the patterns read it: each run of whitespace that holds at most one line break
    (a space, a tab, "\n", " \r\n  ") is one space; runs with two line breaks or more stay.

    `marks` are (view position, text position) pairs where the two part, in order; `position`
    maps a view position back to the text.
    """

    view: str
    marks: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, text: str) -> Spacing:
        """The spacing view of `text`."""
        pieces: list[str] = []
        marks: list[tuple[int, int]] = []
        last = shift = 0
        for run in _WHITESPACE.finditer(text):
            if run.group() == " " or run.group().count("\n") > 1:
                continue
            pieces.append(text[last : run.start()])
            pieces.append(" ")
            last = run.end()
            if len(run.group()) > 1:
                shift += len(run.group()) - 1
                marks.append((run.end() - shift, run.end()))
        if not pieces:
            return cls(text, ())
        pieces.append(text[last:])
        return cls("".join(pieces), tuple(marks))

    def position(self, at: int) -> int:
        """The text position of view position `at` (a collapsed run's space: the run's start)."""
        mark = bisect_right(self.marks, (at, math.inf)) - 1
        if mark < 0:
            return at
        view_at, text_at = self.marks[mark]
        return at - view_at + text_at

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The text span of the view span [start, end) (end > start)."""
        return self.position(start), self.position(end - 1) + 1


# Each entity's patterns, for streaming: where a match may still be growing (see `unsettled`).
_PATTERNS = {
    "email": partial_patterns([_EMAIL]),
    "phone": partial_patterns([_PHONE]),
    "credit_card": partial_patterns([_CARD]),
    "iban": partial_patterns([_IBAN]),
    "ssn": partial_patterns([_SSN]),
    "ip_address": partial_patterns([_IPV4, _IPV6]),
}


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check (ISO/IEC 7812-1), as every payment card number does."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether `candidate` (spaces allowed) is 15-34 characters and passes ISO 7064 mod 97-10, as IBANs do."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def scan(text: str, entities: tuple[str, ...] | list[str] = ENTITIES) -> Scan:
    """Findings for the personal data kinds in `entities` (email, phone, credit_card, iban, ssn,
    ip_address), overlaps resolved by `PRIORITY`; score: the highest finding's (0.8-1.0)."""
    wanted = set(entities)
    found: list[Finding] = []
    spacing = Spacing.of(text)
    text = spacing.view
    if "email" in wanted and "@" in text:
        found += [
            Finding("email", *m.span())
            for m in _EMAIL.finditer(text)
            if not _USERINFO_START.search(text, max(0, m.start() - 160), m.start())
        ]
    if "credit_card" in wanted:
        for m in _CARD.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits):
                found.append(Finding("credit_card", *m.span()))
    if "iban" in wanted:
        found += [Finding("iban", *m.span()) for m in _IBAN.finditer(text) if iban_valid(m.group())]
    if "ssn" in wanted:
        found += [Finding("ssn", *m.span(), score=0.9) for m in _SSN.finditer(text)]
    if "ip_address" in wanted:
        found += [Finding("ip_address", *m.span(), score=0.8) for m in _IPV4.finditer(text)]
        if "::" in text or text.count(":") >= 5:
            for m in _IPV6.finditer(text):
                if len(m.group()) >= 6 and _is_ipv6(m.group()):
                    found.append(Finding("ip_address", *m.span(), score=0.8))
    if "phone" in wanted:
        for m in _PHONE.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if 9 <= digits <= 15:
                found.append(Finding("phone", *m.span(), score=0.8))
    if spacing.marks:
        found = [replace(f, **dict(zip(("start", "end"), spacing.span(f.start, f.end), strict=True))) for f in found]
    findings = tuple(drop_overlaps(found, PRIORITY))
    return Scan(max((f.score for f in findings), default=0.0), findings)


def _is_ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def unsettled(text: str, entities: tuple[str, ...] | list[str] = ENTITIES) -> int:
    """Streaming: where the tail that more text could turn into personal data starts (an unfinished
    word that may become an e-mail address, a run of digits and separators that may grow into a
    phone or card number); `len(text)` when there is none. Derived from the rail's own patterns."""
    spacing = Spacing.of(text)
    start = min(
        (unsettled_start(_PATTERNS[kind], spacing.view) for kind in entities if kind in _PATTERNS),
        default=len(spacing.view),
    )
    # A view position at its end is the text's end (a trailing run of spaces collapsed into one).
    return len(text) if start >= len(spacing.view) else spacing.position(start)
