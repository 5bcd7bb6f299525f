"""Prompt-injection and jailbreak heuristics, on the text as written and as it decodes.

Each pattern is one signal with a weight; the score combines the signals found. The same
patterns run over views an attacker uses to slip past a plain match: look-alike letters folded
to ASCII and accents taken off (Unicode's decompositions), leetspeak, ROT13, base64 and hex
runs, letters spaced out ("i g n o r e  a l l"), and text hidden in invisible characters.
"Ignore previous instructions" is matched in English, French, Spanish, German, Italian and
Portuguese.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import regex

from guard.rails import Finding, Scan, combined_score
from guard.rails.unicode import fold

_QUALIFIER = (
    r"(?:all|any|every|your|previous|prior|above|earlier|preceding|former|original|initial|system|safety|developer)"
)
_TARGET = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails|constraints|programming"
    r"|policies|restrictions)"
)


def _ignore_instructions(verbs: str, before: str, targets: str, after: str = "") -> str:
    """ "Ignore (all) (previous) instructions" in one language, on unaccented text: a verb, then a
    qualifier before the target (`before`: all, your...) or after it (`after`: previous, above...).
    A plain "ignore the instructions" (on a box, in a manual) is not one."""
    tail = rf"|(?:{targets})\s+(?:\w+\s+){{0,1}}?(?:{after})\b" if after else ""
    return (
        rf"(?<![\w'’])(?:{verbs})\b[\s,]+(?:\w+\s+){{0,3}}?"
        rf"(?:(?:{before})\s+(?:\w+\s+){{0,2}}?(?:{targets})\b{tail})"
    )


# Other languages' "ignore previous instructions" (unaccented: "precedentes" reads "précédentes").
# The lookbehind keeps French "j'ignore" (I do not know) out.
_FOREIGN_IGNORE = {
    "fr": _ignore_instructions(
        r"ignorer?|ignorez|ignores|oublier?|oubliez|oublies|ne\s+(?:tiens|tenez)\s+(?:pas|plus)\s+compte\s+des?"
        r"|(?:fais|faites)\s+abstraction\s+des?",
        r"toutes|tous|vos|tes|(?:les|tes|vos)\s+(?:precedentes|anciennes|premieres)",
        r"instructions?|consignes?|regles|directives|indications|commandes|ordres",
        r"precedentes|anterieures|ci-dessus|initiales|precedemment|du\s+systeme|d'origine",
    ),
    "es": _ignore_instructions(
        r"ignora|ignore|ignoren|ignorad|olvida|olvide|olviden|omite|omita|descarta|descarte",
        r"todas|todos|tus|sus",
        r"instrucciones|indicaciones|reglas|directrices|ordenes",
        r"anteriores|previas|de\s+arriba|iniciales|originales|del\s+sistema",
    ),
    "de": _ignore_instructions(
        r"ignoriere|ignorier|ignorieren|ignoriert|vergiss|vergessen|vergesst|missachte|missachten|uberspringe",
        r"alle|deine|ihre|eure|die\s+(?:vorherigen|bisherigen|obigen|vorigen)",
        r"anweisungen|instruktionen|regeln|vorgaben|befehle|richtlinien",
    ),
    "it": _ignore_instructions(
        r"ignora|ignorate|ignori|dimentica|dimenticate|dimentichi|tralascia",
        r"tutte|tutti|le\s+tue|le\s+sue|le\s+vostre",
        r"istruzioni|indicazioni|regole|direttive",
        r"precedenti|sopra|iniziali|originali|di\s+sistema",
    ),
    "pt": _ignore_instructions(
        r"ignore|ignora|ignorem|esqueca|esquecam|desconsidere|desconsidera",
        r"todas|todos|suas|tuas",
        r"instrucoes|instrucao|orientacoes|regras|diretrizes",
        r"anteriores|previas|acima|iniciais|originais|do\s+sistema",
    ),
}

PATTERNS: tuple[tuple[str, float, re.Pattern[str]], ...] = tuple(
    (kind, weight, re.compile(pattern, re.IGNORECASE | re.MULTILINE))
    for kind, weight, pattern in [
        (
            "ignore_instructions",
            0.9,
            rf"\b(?:ignore|disregard|forget|skip|bypass|override|abandon|drop)\b[\s,]+(?:\w+\s+){{0,3}}?{_QUALIFIER}\s+(?:\w+\s+){{0,2}}?{_TARGET}\b",
        ),
        *(("ignore_instructions", 0.9, pattern) for pattern in _FOREIGN_IGNORE.values()),
        (
            "persona_override",
            0.85,
            r"\byou\s+are\s+(?:now\s+)?(?:no\s+longer\s+an?\s+ai|dan\b|in\s+(?:developer|god|jailbreak|unrestricted)\s+mode|jailbroken|unfiltered|uncensored|an?\s+unrestricted|freed?\s+from)",
        ),
        ("do_anything_now", 0.85, r"\bdo\s+anything\s+now\b"),
        ("jailbreak_mode", 0.6, r"\b(?:jailbreak|god|unrestricted|unfiltered|evil)\s+mode\b|\bjailbr(?:eak|oken)\b"),
        ("developer_mode", 0.4, r"\b(?:enable|activate|enter|switch\s+to)\s+developer\s+mode\b"),
        (
            "reveal_system_prompt",
            0.8,
            r"\b(?:reveal|show|print|repeat|output|display|tell\s+me|leak|dump|recite|what\s+(?:is|are|was|were))\b[^.\n]{0,30}?\b(?:your|the)\s+(?:system\s+prompt|(?:initial|hidden|secret|original|previous)\s+(?:prompt|instructions)|instructions\s+above|prompt\s+above)",
        ),
        (
            "no_restrictions",
            0.8,
            r"\b(?:pretend|act|behave|roleplay|respond|answer|imagine)\b[^.\n]{0,50}?\b(?:no|without|free\s+of|ignoring|unbound\s+by)\s+(?:any\s+)?(?:restrictions|rules|limits|limitations|filters|guidelines|censorship|ethics|morals|moral\s+constraints|content\s+polic(?:y|ies))",
        ),
        ("no_longer_bound", 0.7, r"\bno\s+longer\s+(?:bound|restricted|limited|constrained)\s+by\b"),
        (
            "disable_safety",
            0.8,
            r"\b(?:override|bypass|disable|turn\s+off|deactivate|circumvent)\b[^.\n]{0,30}?\b(?:safety|content|security|moderation)\s+(?:filters?|guidelines|policies|measures|protocols|restrictions|systems?)",
        ),
        ("new_instructions", 0.6, r"\b(?:new|updated|real|actual|revised)\s+(?:system\s+)?instructions?\s*:"),
        (
            "chat_template_tokens",
            0.7,
            r"<\|(?:im_start|im_end|system|endoftext|eot_id|start_header_id)\|>|\[/?INST\]|<<SYS>>",
        ),
        ("role_header", 0.35, r"^\s*(?:#{2,}\s*)?(?:system|developer)\s*(?:prompt)?\s*:\s*(?=\S)"),
        (
            "from_now_on",
            0.35,
            r"\bfrom\s+now\s+on\b[^.\n]{0,60}?\b(?:you\s+(?:will|must|are|shall)|respond|answer|always|never|only)\b",
        ),
    ]
)

_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}(?:[\s:,]|\\x)?){12,}(?![0-9A-Fa-f])")
_LEET = str.maketrans("013457@$|!", "oieastasil")
# Letters spaced out with one separator between each ("i g n o r e", "i.g.n.o.r.e"): at least
# three, the same separator throughout; words stay apart by whatever parts the runs.
_SPACED_LETTERS = regex.compile(r"(?<![^\s])\w(?P<sep>[ .\-_*·])\w(?:(?P=sep)\w)+(?![^\s])")
# A decoded payload that carries instructions is worse than the same words in plain text.
ENCODED_BONUS = 0.1


@dataclass(frozen=True, slots=True)
class View:
    """One reading of the text the patterns run over: plain, leetspeak, hidden, ROT13 or a decoded run."""

    name: str
    text: str
    # Where in the original text this view's matches are reported (a decoded run's span); None
    # when the view has the original's positions.
    span: tuple[int, int] | None = None


def scan(text: str, hidden: str = "", decode: bool = True, spaced: str = "") -> Scan:
    """Injection signals in `text`, its transformed views, and `hidden` and `spaced` (from the
    unicode rail: text spelled by invisible characters, and the text with each invisible
    character read as a space, for fillers such as U+3164 that stand in for one)."""
    folded = _reading(text)
    views = [View("plain", folded)]
    if spaced and spaced != text:
        views.append(View("spaced", _reading(spaced), (0, len(text))))
    joined = _SPACED_LETTERS.sub(lambda run: run.group().replace(run.group("sep"), ""), folded)
    if joined != folded:
        views.append(View("spaced_letters", joined, (0, len(text))))
    leet = folded.translate(_LEET)
    if leet != folded:
        views.append(View("leetspeak", leet))
    if hidden:
        views.append(View("hidden_text", _reading(hidden), (0, len(text))))
    if decode:
        views.append(View("rot13", codecs.encode(folded, "rot13")))
        views.extend(_decoded_runs(folded))
    signals: dict[str, Finding] = {}
    for view in views:
        for kind, weight, pattern in PATTERNS:
            for match in pattern.finditer(view.text):
                score = min(1.0, weight + (ENCODED_BONUS if view.name != "plain" else 0.0))
                start, end = view.span or match.span()
                label = kind if view.name == "plain" else f"{kind}:{view.name}"
                if label not in signals or signals[label].score < score:
                    signals[label] = Finding(label, start, end, score, detail=view.name)
                break  # one match per pattern and view is one signal
    findings = tuple(sorted(signals.values(), key=lambda f: f.start))
    return Scan(combined_score(f.score for f in findings), findings)


def _reading(text: str) -> str:
    """`text` as the patterns read it, the same length: look-alikes folded (`fold`), then each
    letter's accents taken off where Unicode decomposes it into a letter and combining marks."""
    folded = fold(text)
    return folded if folded.isascii() else "".join(_unaccented(char) for char in folded)


@lru_cache(maxsize=4096)
def _unaccented(char: str) -> str:
    parts = unicodedata.normalize("NFD", char)
    if len(parts) > 1 and all(unicodedata.category(mark) == "Mn" for mark in parts[1:]):
        return parts[0]
    return char


def _decoded_runs(text: str) -> list[View]:
    views = []
    for match in _BASE64_RUN.finditer(text):
        decoded = _base64_text(match.group())
        if decoded:
            views.append(View("base64", _reading(decoded), match.span()))
    for match in _HEX_RUN.finditer(text):
        digits = re.sub(r"[^0-9A-Fa-f]", "", match.group().replace("\\x", ""))
        decoded = _printable(bytes.fromhex(digits[: len(digits) // 2 * 2]))
        if decoded:
            views.append(View("hex", _reading(decoded), match.span()))
    return views


def _base64_text(run: str) -> str | None:
    if run.isalpha() and (run.islower() or run.isupper()):
        return None  # a long plain word, not an encoding
    padded = run + "=" * (-len(run) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = _printable(decoder(padded))
        except (binascii.Error, ValueError):
            continue
        if decoded:
            return decoded
    return None


def _printable(data: bytes) -> str | None:
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(decoded) < 8:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
    letters = sum(c.isalpha() or c == " " for c in decoded)
    return decoded if printable / len(decoded) > 0.95 and letters / len(decoded) > 0.7 else None
