"""Model answers and prompt text as safe HTML: markdown-it-py renders, nh3 (ammonia) sanitizes.

Raw HTML in the source is never passed through (markdown-it's `html` option is off, so it is
escaped), and nh3 then keeps only the tags, attributes and URL schemes below: a `javascript:`
link loses its href, an event handler attribute never survives. Citation markers `[n]` become
buttons that open the cited chunk; they are made from text tokens only, never from HTML.
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "del", "sup", "button",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "button": {"type", "class", "data-cite", "aria-label"},
}
URL_SCHEMES = {"http", "https", "mailto"}
# No `style` attribute anywhere (tables' column alignment included): the CSP allows no inline style.
# A citation marker as the chat pipeline numbers its context: [1], [2], ...
CITATION = re.compile(r"\[(\d{1,2})\]")


def _citation_rule(state: StateCore) -> None:
    """Split text tokens at `[n]` markers and put a citation button token between the parts."""
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        for token in block.children:
            if token.type != "text" or not CITATION.search(token.content):
                children.append(token)
                continue
            position = 0
            for match in CITATION.finditer(token.content):
                if match.start() > position:
                    text = Token("text", "", 0)
                    text.content = token.content[position : match.start()]
                    children.append(text)
                marker = Token("html_inline", "", 0)
                number = int(match.group(1))
                marker.content = (
                    f'<sup><button type="button" class="cite" data-cite="{number}" '
                    f'aria-label="Open source {number}">[{number}]</button></sup>'
                )
                children.append(marker)
                position = match.end()
            if position < len(token.content):
                text = Token("text", "", 0)
                text.content = token.content[position:]
                children.append(text)
        block.children = children


def _parser(citations: bool) -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
    if citations:
        parser.core.ruler.push("citations", _citation_rule)
    return parser


_PLAIN = _parser(citations=False)
_CITING = _parser(citations=True)


def render_markdown(text: str, *, citations: bool = False) -> str:
    """Markdown `text` as sanitized HTML; with `citations`, `[n]` markers become citation buttons."""
    html = (_CITING if citations else _PLAIN).render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
