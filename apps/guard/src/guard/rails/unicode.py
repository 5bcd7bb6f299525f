"""Unicode smuggling: invisible characters, tag characters, bidi controls and homoglyphs.

Every rule here reads Unicode's own data, never a hand-made list of characters:

- *Invisible* is every `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt) and every
  format character (general category `Cf`), as the `regex` module's Unicode tables know them.
- Text is walked in extended grapheme clusters (UAX #29, `regex`'s `\\X`), and a cluster that is
  an emoji sequence stays whole: an RGI emoji (UTS #51's emoji-sequences.txt and
  emoji-zwj-sequences.txt, as ICU ships them: flags, keycaps, ZWJ and tag sequences, VS16), any
  emoji ZWJ sequence built of such elements (UTS #51 ED-16), an emoji presentation or text
  presentation sequence (ED-8a, ED-8b), or a subdivision flag tag sequence (ED-14a).
- ZWNJ and ZWJ stay where a script needs them: RFC 5892's CONTEXTJ rules (after a virama; ZWNJ
  between joining letters), so Persian and Indic words are not broken.
- Look-alike letters fold with Unicode's confusables.txt (UTS #39 skeletons, from ICU's
  SpoofChecker) after NFKC (fullwidth and mathematical letters).

Hidden text is decoded, not just removed: instructions written in tag characters (U+E0000 to
U+E007F) or variation selectors are invisible to a person and readable by a model, so the
injection rail scans what they spell.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import icu
import regex

from guard.rails import Finding, Scan, combined_score

ZWJ = "\u200d"
ZWNJ = "\u200c"
VS16 = "\ufe0f"  # emoji presentation selector
VS15 = "\ufe0e"  # text presentation selector

_INVISIBLE = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Cf}]")
_CLUSTER = regex.compile(r"\X")
# One hidden-text run (tag characters, variation selectors) or one other invisible character.
_SMUGGLED = regex.compile(
    r"(?P<tags>[\U000e0000-\U000e007f]+)|(?P<selectors>[\ufe00-\ufe0f\U000e0100-\U000e01ef]+)"
    r"|(?P<one>[\p{Default_Ignorable_Code_Point}\p{Cf}])"
)
_BIDI_CONTROL = regex.compile(r"\p{Bidi_Control}")
_BIDI_OVERRIDE = frozenset("\u202d\u202e")  # they reorder what a reader sees
_EMOJI = regex.compile(r"\p{Emoji}")
_LATIN = regex.compile(r"\p{Script=Latin}")
_PICTOGRAPHIC = regex.compile(r"\p{Extended_Pictographic}")
# UTS #51 ED-14a: black flag, a unicode_subdivision_id (UTS #35: region + 1-4 alphanumerics) in
# tag letters and digits, then CANCEL TAG.
_SUBDIVISION_FLAG = regex.compile(
    r"\U0001f3f4[\U000e0061-\U000e007a]{2}[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,4}\U000e007f"
)
# RFC 5892 appendix A.1 and A.2 (CONTEXTJ), with Joining_Type from ArabicShaping.txt.
_VIRAMA = regex.compile(r"\p{Canonical_Combining_Class=Virama}")
_JOINS_LEFT = regex.compile(
    r"[\p{Joining_Type=Dual_Joining}\p{Joining_Type=Left_Joining}]\p{Joining_Type=Transparent}*$"
)
_JOINS_RIGHT = regex.compile(
    r"\p{Joining_Type=Transparent}*[\p{Joining_Type=Dual_Joining}\p{Joining_Type=Right_Joining}]"
)

# ICU's sets are read-only once frozen, so one instance serves every thread.
_RGI_EMOJI = icu.UnicodeSet("[:RGI_Emoji:]")
_RGI_EMOJI.freeze()
_SPOOF = icu.SpoofChecker()


@dataclass(frozen=True, slots=True)
class UnicodeScan:
    """The unicode rail's answer: its findings, the text without invisible characters, the same
    with each removed character read as a space, and any text hidden in tag characters or
    variation selectors (for the injection rail to read)."""

    scan: Scan
    sanitized: str  # invisible characters removed (emoji sequences and script joiners kept)
    hidden: str  # text spelled by tag characters or variation selectors
    spaced: str = ""  # like sanitized, with each removed character a space (U+3164 looks like one)


def is_emoji_sequence(cluster: str) -> bool:
    """Whether a grapheme cluster is an emoji whose joiners and selectors belong to it (UTS #51)."""
    if _RGI_EMOJI.contains(cluster) or _SUBDIVISION_FLAG.fullmatch(cluster):
        return True
    if len(cluster) == 2 and cluster[1] in (VS15, VS16) and _EMOJI.match(cluster[0]):
        return True  # ED-8a/ED-8b: emoji or text presentation of an emoji character
    parts = cluster.split(ZWJ)
    return len(parts) > 1 and all(_zwj_element(part) for part in parts)


def _zwj_element(part: str) -> bool:
    """UTS #51 ED-15a: an emoji character, presentation, modifier or tag sequence."""
    if not part:
        return False
    if _RGI_EMOJI.contains(part) or _SUBDIVISION_FLAG.fullmatch(part):
        return True
    return bool(_PICTOGRAPHIC.match(part[0])) and part[1:] in ("", VS16)


def _joiner_allowed(text: str, i: int) -> bool:
    """RFC 5892 CONTEXTJ: ZWJ/ZWNJ after a virama, or ZWNJ between joining letters (Persian)."""
    before = text[:i]
    if before and _VIRAMA.match(before[-1]):
        return True
    return text[i] == ZWNJ and bool(_JOINS_LEFT.search(before)) and bool(_JOINS_RIGHT.match(text, i + 1))


def scan(text: str) -> UnicodeScan:
    """Smuggled or invisible characters in `text`, by finding kind: `tag_characters`,
    `variation_selectors`, `bidi_control`, `invisible` (any other default-ignorable or format
    character), and `mixed_script` (Latin mixed with look-alike letters)."""
    if text.isascii():  # the common case: nothing to smuggle in ASCII
        return UnicodeScan(Scan(), text, "", text)
    findings: list[Finding] = []
    kept: list[str] = []
    spaced: list[str] = []
    hidden: list[str] = []
    for cluster_match in _CLUSTER.finditer(text):
        cluster = cluster_match.group()
        if not _INVISIBLE.search(cluster) or is_emoji_sequence(cluster):
            kept.append(cluster)
            spaced.append(cluster)
            continue
        base = cluster_match.start()
        last = 0
        for m in _SMUGGLED.finditer(cluster):
            kept.append(cluster[last : m.start()])
            spaced.append(cluster[last : m.start()])
            last = m.end()
            start, end = base + m.start(), base + m.end()
            if m.group("tags"):
                run = m.group()
                hidden.append("".join(chr(ord(c) - 0xE0000) for c in run if 0x20 <= ord(c) - 0xE0000 < 0x7F))
                findings.append(Finding("tag_characters", start, end, 1.0, replacement=""))
            elif m.group("selectors"):
                run = m.group()
                # Each selector carries a byte (the "emoji smuggling" encoding).
                data = bytes((ord(c) - 0xE0100 + 16) if ord(c) >= 0xE0100 else (ord(c) - 0xFE00) for c in run)
                hidden.append(data.decode("utf-8", errors="ignore"))
                findings.append(
                    Finding("variation_selectors", start, end, 0.9 if len(run) > 2 else 0.4, replacement="")
                )
            elif m.group() in (ZWJ, ZWNJ) and _joiner_allowed(text, start):
                kept.append(m.group())
                spaced.append(m.group())
                continue
            elif _BIDI_CONTROL.match(m.group()):
                score = 0.8 if m.group() in _BIDI_OVERRIDE else 0.5
                findings.append(Finding("bidi_control", start, end, score, replacement=""))
            else:
                findings.append(Finding("invisible", start, end, 0.35, replacement=""))
            if m.group("one"):
                spaced.append(" ")
        kept.append(cluster[last:])
        spaced.append(cluster[last:])
    sanitized = "".join(kept)
    findings.extend(_mixed_script_words(text))
    # Many invisible characters are one signal, not many independent ones.
    by_kind: dict[str, float] = {}
    for finding in findings:
        by_kind[finding.kind] = max(by_kind.get(finding.kind, 0.0), finding.score)
    if sum(f.kind == "invisible" for f in findings) >= 3:
        by_kind["invisible"] = 0.8
    findings.sort(key=lambda f: f.start)
    return UnicodeScan(
        Scan(combined_score(by_kind.values()), tuple(findings)), sanitized, "".join(hidden), "".join(spaced)
    )


def _mixed_script_words(text: str) -> list[Finding]:
    """Words mixing ASCII letters with look-alikes of them (`pаypal` with a Cyrillic a)."""
    findings = []
    for m in regex.finditer(r"\p{L}+", text):
        word = m.group()
        if word.isascii() or not any(c.isascii() for c in word):
            continue
        # Another script's letter (UTS #39: a mixed-script word), not an accented Latin one (ı, ß).
        if any(not c.isascii() and not _LATIN.match(c) and _fold_char(c) != c for c in word):
            findings.append(Finding("mixed_script", *m.span(), 0.5, detail="Latin mixed with look-alike letters"))
    return findings


def _skeleton(char: str) -> str:
    """UTS #39 skeleton of one character (confusables.txt prototype, after NFD)."""
    return _SPOOF.getSkeleton(0, char)


# Each ASCII character's skeleton, reversed: the prototype for `I`, `l`, `1` and `|` is `l`, so
# folding needs to pick the one a look-alike stands for (Greek capital iota is an `I`).
_ASCII_BY_SKELETON: dict[str, tuple[str, ...]] = {}
for _c in string.printable:
    _ASCII_BY_SKELETON.setdefault(_skeleton(_c), ())
    _ASCII_BY_SKELETON[_skeleton(_c)] += (_c,)


@lru_cache(maxsize=8192)
def _fold_char(char: str) -> str:
    normal = unicodedata.normalize("NFKC", char)
    if len(normal) == 1 and normal.isascii():
        return normal  # fullwidth and mathematical letters (ｉｇｎｏｒｅ, 𝐢𝐠𝐧𝐨𝐫𝐞)
    prototype = _skeleton(char if len(normal) != 1 else normal)
    candidates = _ASCII_BY_SKELETON.get(prototype, ())
    if not candidates:
        return char
    if char.isalpha():
        letters = [c for c in candidates if c.isalpha()]
        same_case = [c for c in letters if c.isupper() == char.isupper()]
        candidates = tuple(same_case or letters or candidates)
    return prototype if prototype in candidates else candidates[0]


def fold(text: str) -> str:
    """A same-length copy for matching: look-alike and compatibility characters mapped to the
    ASCII character they imitate (UTS #39 confusables, NFKC); other characters unchanged."""
    if text.isascii():
        return text
    return "".join(_fold_char(c) if not c.isascii() else c for c in text)


def unsettled(text: str) -> int:
    """Streaming: the last grapheme cluster, which more text may extend (a ZWJ, a variation
    selector or a keycap after `1` makes another emoji, and a lone joiner is stripped); nothing
    after whitespace. `len(text)` when there is no such tail."""
    if not text or (text[-1].isspace() and text[-1] != "\r"):  # CR LF is one cluster
        return len(text)
    start = max(0, len(text) - 64)  # a cluster is short: read only the end of the text
    last = start
    for match in _CLUSTER.finditer(text, start):
        last = match.start()
    return last
