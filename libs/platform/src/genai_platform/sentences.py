"""Where a sentence ends in streamed text: the guard's rule, in one place.

The guard releases a streamed answer sentence by sentence (guard.streaming), and the gateway asks
the guard for a step only once the text may hold a new sentence end (gateway.chat). Both read
this one rule, so they cannot drift apart: a copy that did once made the gateway wait for text
the guard would already have released (a time-to-first-token bug).

The rule: a sentence ends after `.`, `!` or `?` (also the CJK `。！？` and the ellipsis `…`), a
run of them counting as one, maybe closed by quotes or brackets, when whitespace follows; a
newline always ends one (lists, code, headings). A sentence end takes the whitespace after it.
"""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f\u2026]+[\"'\u201d\u2019)\]]*(?=\s)\s*|\n+")
# How far before new text an end mark that the new text completes may sit: the end mark, a few
# closing quotes or brackets, then the whitespace that arrives with the new text.
SENTENCE_END_REACH = 8


def last_sentence_end(text: str) -> int:
    """The index just past the last sentence end in `text` (whitespace after it included); 0 if none."""
    cut = 0
    for match in SENTENCE_END.finditer(text):
        cut = match.end()
    return cut


def may_end_sentence(pending: str, new_text: str) -> bool:
    """True when `new_text`, just appended to `pending` (which ends with it), may complete a sentence.

    Only a sentence end that the new text completes counts: earlier ones were asked about already.
    """
    new_from = len(pending) - len(new_text)
    window = max(0, new_from - SENTENCE_END_REACH)
    return any(match.end() > new_from for match in SENTENCE_END.finditer(pending, window))
