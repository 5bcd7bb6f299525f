"""The web UI's pure parts: sanitized markdown, platform errors in words, diffs, loss curves, forms."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from ui import views
from ui.answers import _parse_sse
from ui.markdown import render_markdown
from ui.platform_api import error_from_response
from ui.web_security import CONTENT_SECURITY_POLICY


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every element the browser would build from `html`: (tag, attributes)."""
    found: list[tuple[str, dict[str, str | None]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collector().feed(html)
    return found


@pytest.mark.parametrize(
    "text",
    [
        "<img src=x onerror=alert(1)>",
        "<script>alert(1)</script>",
        "[click](javascript:alert(1))",
        '<a href="javascript:alert(1)">x</a>',
        "[x](JaVaScRiPt:alert(1))",
        "![i](javascript:alert(1))",
        '<svg onload="alert(1)">',
    ],
)
def test_model_markdown_is_rendered_inert(text: str) -> None:
    for tag, attributes in elements(render_markdown(text, citations=True)):
        assert tag not in ("script", "img", "svg", "iframe"), tag
        assert not [name for name in attributes if name.startswith("on")], attributes
        assert not (attributes.get("href") or "").lower().startswith("javascript"), attributes


def test_markdown_keeps_formatting_links_and_turns_markers_into_citation_buttons() -> None:
    html = render_markdown("**Bold** and [docs](https://example.org) say so [2].", citations=True)
    assert "<strong>Bold</strong>" in html
    assert 'href="https://example.org"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert 'data-cite="2"' in html and ">[2]</button>" in html
    # In code, a marker is text.
    assert "data-cite" not in render_markdown("`[1]`", citations=True)


def test_platform_refusals_are_put_in_words() -> None:
    unauthorized = error_from_response(401, {}, b'{"detail": "A valid API key is required."}')
    assert "API key" in unauthorized.message and unauthorized.status == 401
    invalid = error_from_response(
        422, {}, b'{"detail": "The request is not valid.", "errors": [{"location": "body.k", "message": "too big"}]}'
    )
    assert "body.k: too big" in invalid.message
    limited = error_from_response(429, {"retry-after": "7"}, b'{"detail": "Over the limit."}')
    assert "7 seconds" in limited.message and limited.retry_after == 7
    unavailable = error_from_response(
        503, {"retry-after": "5"}, b'{"detail": "The features service cannot be reached."}'
    )
    assert "features service" in unavailable.message and "5 seconds" in unavailable.message
    assert "not JSON" not in error_from_response(500, {}, b"<html>").message


def test_sse_payloads_are_split_at_blank_lines_and_the_rest_is_kept() -> None:
    payloads, rest = _parse_sse('data: {"a": 1}\n\ndata: [DONE]\n\ndata: {"b"')
    assert payloads == ['{"a": 1}', "[DONE]"] and rest == 'data: {"b"'


def test_server_timing_is_read_in_order() -> None:
    stages = views.parse_server_timing("guard-in;dur=12.5, retrieve;dur=3, total;desc=x;dur=40.25, bad")
    assert stages == [("guard-in", 12.5), ("retrieve", 3.0), ("total", 40.25)]


def test_side_by_side_diff_pairs_changed_lines() -> None:
    rows = views.side_by_side("a\nb\nc", "a\nB\nc\nd")
    assert [r["kind"] for r in rows] == ["equal", "replace", "equal", "insert"]
    assert rows[1] == {"kind": "replace", "left": "b", "right": "B"}
    assert rows[3]["left"] is None and rows[3]["right"] == "d"


def test_loss_series_by_step_from_newest_first_events() -> None:
    events = [
        {"data": {"step": 4, "loss": 1.5}},
        {"data": {"step": 4, "eval_loss": 1.7}},
        {"data": {"step": 0, "eval_loss": 2.5, "base": True}},  # the base model's: not this curve
        {"data": {"step": 2, "loss": 2.0}},
        {"data": {"message": "started"}},
    ]
    assert views.loss_series(events) == {"train": [[2, 2.0], [4, 1.5]], "eval": [[4, 1.7]]}


def test_the_prompt_editor_makes_typed_variables_and_the_playground_types_values() -> None:
    form = {
        "system": "Be brief.",
        "user": "Hello {{ name }}, {{ n }} times",
        "var_name_0": "name",
        "var_type_0": "string",
        "var_required_0": "yes",
        "var_name_1": "n",
        "var_type_1": "integer",
        "var_name_2": "",
    }
    draft = views.prompt_draft(form)
    assert draft["messages"][0] == {"role": "system", "content": "Be brief."}
    assert draft["variables"] == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["name"],
    }
    assert views.editor_fields(draft)["variables"][:2] == [
        {"name": "name", "type": "string", "required": True},
        {"name": "n", "type": "integer", "required": False},
    ]
    typed = views.typed_variables({"var:n:integer": "3", "var:x:number": "nope", "var:b:boolean": "true", "a": "1"})
    assert typed == {"n": 3, "x": "nope", "b": True}


def test_a_job_form_becomes_a_training_request() -> None:
    body = views.job_request(
        {
            "model": "m",
            "training_file": "collection:handbooks",
            "max_steps": "6",
            "learning_rate": "0.002",
            "kind": "job",
        }
    )
    assert body["training_collection"] == "handbooks" and "training_file" not in body
    assert body["hyperparameters"] == {"max_steps": 6, "learning_rate": 0.002}
    workflow = views.job_request({"training_file": "file-1", "kind": "workflow", "max_loss_ratio": "1.5"})
    assert workflow["gate"] == {"max_loss_ratio": 1.5} and workflow["training_file"] == "file-1"


def test_the_content_security_policy_allows_no_inline_script_and_no_framing() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'" and "unsafe" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"
