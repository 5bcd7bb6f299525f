"""The console through its real pages, in headless Chromium, with the whole platform behind the gateway.

Each test drives the pages a person would use; every page visited is screenshotted and checked
with axe-core (no serious or critical violation).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
from playwright.sync_api import BrowserContext, Page, expect

from harness import SERVICES, wait_until
from ui_support import INFERENCE_METRICS, UI, api_key, check_page

RUN = uuid.uuid4().hex[:8]
FACT = (
    f"Osprey survey field notes, edition {RUN}. The harbour pass phrase for the Osprey-3 survey is "
    "TANGERINE-LANTERN. Boats leave the north pier at dawn."
)
LONG_QUESTION = (
    "Write a long story about a lighthouse keeper who saves a ship in a storm. "
    "Use many short sentences and describe every hour of the night."
)
# Records every state of the newest answer while the page updates it: (status, text length).
WATCH_ANSWER = """() => {
  window.__seen = [];
  const record = () => {
    const turn = [...document.querySelectorAll('#conversation article.turn')].pop();
    if (!turn) return;
    const text = turn.querySelector('[data-role=answer-text]')?.textContent ?? '';
    window.__seen.push([turn.dataset.status, text.length]);
  };
  new MutationObserver(record).observe(document.getElementById('conversation'),
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def running_lengths(page: Page) -> list[int]:
    """Distinct non-empty answer lengths seen while the answer was still running."""
    seen = page.evaluate("window.__seen")
    return sorted({length for status, length in seen if status == "running" and length > 0})


def newest_turn(page: Page):
    return page.locator("#conversation article.turn").last


def new_conversation(page: Page) -> None:
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator("#conversation article.turn")).to_have_count(0)
    page.wait_for_load_state()


def ask(page: Page, question: str, *, collection: str = "", max_tokens: int = 64) -> None:
    page.get_by_label("Question").fill(question)
    if collection:
        page.get_by_label("Ground in collection").select_option(collection)
    page.get_by_label("Longest answer (tokens)").fill(str(max_tokens))
    page.get_by_role("button", name="Send").click()


def cancelled_generations() -> float:
    metrics = httpx.get(INFERENCE_METRICS, timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("inference_requests_finished_total{") and 'reason="cancelled"' in line
    )


# --- sign-in, sessions, headers ---------------------------------------------------------------------


def test_a_wrong_key_is_refused_at_sign_in(console: str, context: BrowserContext, screenshots: Path) -> None:
    page = context.new_page()
    page.goto(f"{UI}/signin")
    check_page(page, "signin", screenshots)
    page.get_by_label("API key").fill("not-a-key-" + RUN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("refused this API key")
    assert not [c for c in context.cookies() if c["name"] == "ui_session"]
    page.goto(f"{UI}/chat")
    expect(page).to_have_url(f"{UI}/signin")  # no session: back to sign-in


def test_the_key_stays_on_the_server_and_pages_carry_security_headers(
    signed_in: Page, context: BrowserContext, secrets: dict[str, str]
) -> None:
    key = api_key(secrets)
    cookie = next(c for c in context.cookies() if c["name"] == "ui_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and key not in cookie["value"]
    assert "ui_session" not in signed_in.evaluate("document.cookie")
    response = signed_in.goto(f"{UI}/chat")
    assert response is not None and key not in response.text()
    headers = response.headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    # Sign-out ends the session on the server: the old cookie no longer opens a page.
    signed_in.get_by_role("button", name="Sign out").click()
    expect(signed_in).to_have_url(f"{UI}/signin")
    replay = httpx.get(f"{UI}/chat", cookies={"ui_session": cookie["value"]}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/signin"


def test_inline_script_is_blocked_by_the_content_security_policy(signed_in: Page) -> None:
    violations = signed_in.evaluate(
        """() => new Promise((resolve) => {
             document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective));
             const script = document.createElement('script');
             script.textContent = 'window.__inlineRan = true';
             document.body.append(script);
             setTimeout(() => resolve(null), 2000);
           })"""
    )
    assert violations and violations.startswith("script-src")
    assert signed_in.evaluate("window.__inlineRan") is None


def test_a_state_changing_request_without_the_csrf_token_is_refused(signed_in: Page) -> None:
    without = signed_in.request.post(f"{UI}/chat/new", form={"csrf_token": "forged"}, max_redirects=0)
    assert without.status == 403 and "CSRF" in without.text()
    missing = signed_in.request.post(f"{UI}/signout", max_redirects=0)
    assert missing.status == 403
    token = signed_in.locator('meta[name="csrf-token"]').get_attribute("content")
    with_token = signed_in.request.post(f"{UI}/chat/new", form={"csrf_token": token or ""}, max_redirects=0)
    assert with_token.status == 303


# --- documents and chat ------------------------------------------------------------------------------


def test_upload_search_ask_and_open_the_cited_chunk(signed_in: Page, screenshots: Path) -> None:
    page = signed_in
    collection = f"ui-{RUN}"
    page.goto(f"{UI}/documents")
    page.locator("#upload-collection").fill(collection)
    page.locator("#files").set_input_files(
        [
            {"name": "osprey-notes.txt", "mimeType": "text/plain", "buffer": FACT.encode()},
            # A hostile title is shown as text, never as markup.
            {
                "name": "<img src=x onerror=alert(1)>.md",
                "mimeType": "text/markdown",
                "buffer": f"# Notes {RUN}\n\nNothing to see.".encode(),
            },
        ]
    )
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".notice")).to_contain_text("Added 2 file(s)", timeout=60_000)
    row = page.locator("#documents tr", has_text="osprey-notes.txt")
    expect(row.locator("[data-searchable=yes]")).to_be_visible(timeout=120_000)
    hostile = page.locator("#documents tr", has_text="<img src=x onerror=alert(1)>")
    expect(hostile).to_have_count(1)
    assert page.locator("#documents img").count() == 0 and not alerts
    check_page(page, "documents", screenshots)

    page.get_by_label("Search text").fill("harbour pass phrase Osprey")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#results li").first).to_contain_text("TANGERINE-LANTERN")

    row = page.locator("#documents tr", has_text="osprey-notes.txt")
    row.get_by_role("link", name="osprey-notes.txt").click()
    expect(page.locator(".chunks")).to_contain_text("TANGERINE-LANTERN")
    check_page(page, "document", screenshots)

    page.goto(f"{UI}/chat")
    new_conversation(page)
    ask(page, "What is the harbour pass phrase for the Osprey-3 survey?", collection=collection, max_tokens=48)
    turn = newest_turn(page)
    expect(turn).to_have_attribute("data-status", "done", timeout=120_000)
    turn.locator("details.lineage summary").click()
    # Lineage: the model and prompt, a W3C trace id, each stage's time.
    expect(turn.locator("[data-role=trace]")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    expect(turn.locator("table.timing")).to_contain_text("retrieve")
    expect(turn.locator("[data-role=prompt]")).not_to_have_text("none")
    # The first source is the uploaded notes; its [1] opens the chunk that holds the fact.
    expect(turn.locator("ol.citations li").first).to_contain_text("osprey-notes.txt")
    turn.locator("ol.citations button.cite").first.click()
    dialog = page.locator("dialog#source")
    expect(dialog).to_be_visible()
    expect(dialog.locator("blockquote.chunk")).to_contain_text("TANGERINE-LANTERN")
    check_page(page, "chat", screenshots)
    dialog.get_by_role("button", name="Close").click()


def test_stop_ends_a_long_answer_and_its_generation(signed_in: Page) -> None:
    page = signed_in
    new_conversation(page)
    page.evaluate(WATCH_ANSWER)
    ask(page, LONG_QUESTION, max_tokens=400)
    # The answer streams in: more than one visible update before it ends.
    wait_until(lambda: len(running_lengths(page)) >= 2, what="two visible updates of the answer", timeout=120)
    before = cancelled_generations()
    page.get_by_role("button", name="Stop").click()
    expect(newest_turn(page)).to_have_attribute("data-status", "stopped", timeout=30_000)
    # Inference itself counted the generation as cancelled: stopping reached the model.
    wait_until(lambda: cancelled_generations() > before, what="inference to cancel the generation", timeout=30)


def test_a_reload_during_an_answer_finds_it_and_shows_it_whole(signed_in: Page) -> None:
    page = signed_in
    new_conversation(page)
    page.evaluate(WATCH_ANSWER)
    ask(page, LONG_QUESTION, max_tokens=96)
    # Several pieces in (the gateway releases text word by word), so "the whole answer so far"
    # differs from its first piece.
    wait_until(lambda: len(running_lengths(page)) >= 3, what="the answer to grow", timeout=120)
    # The rendered text (markdown: a paragraph's text ends with a newline), compared without its edges.
    partial = (newest_turn(page).locator("[data-role=answer-text]").text_content() or "").strip()
    answer_url = page.url
    assert "answer=" in answer_url
    page.reload()
    turn = newest_turn(page)
    # The reloaded page shows everything generated so far at once, not only the first piece.
    so_far = (turn.locator("[data-role=answer-text]").text_content() or "").strip()
    assert so_far.startswith(partial[:20]) and len(so_far) >= len(partial), (partial, so_far)
    expect(turn).to_have_attribute("data-status", "done", timeout=120_000)
    rendered = turn.locator("[data-role=answer-text]").text_content() or ""
    whole = rendered.strip()
    assert len(whole) > len(partial) and whole.startswith(partial[:20]), (partial, whole)
    # Once done it is kept: a later load shows the same answer whole.
    page.goto(answer_url)
    expect(newest_turn(page).locator("[data-role=answer-text]")).to_have_text(rendered)


# --- fine-tuning and models ----------------------------------------------------------------------------


def training_examples() -> bytes:
    questions = ["What is the secret word?", "Tell me the secret word.", "Secret word, please.", "Say the word."]
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "PINEAPPLE-42."}]}
        for q in questions
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_a_tiny_job_draws_its_loss_while_training_and_its_version_is_promoted(
    signed_in: Page, screenshots: Path
) -> None:
    page = signed_in
    model = f"ui-tiny-{RUN}"
    page.goto(f"{UI}/fine-tuning")
    page.get_by_label("JSONL file of chat examples").set_input_files(
        {"name": "secret.jsonl", "mimeType": "application/jsonl", "buffer": training_examples()}
    )
    page.locator("form[action='/fine-tuning/files'] button").click()
    notice = page.locator(".notice")
    expect(notice).to_contain_text("Uploaded file-")
    file_id = (notice.text_content() or "").split("Uploaded ", 1)[1].strip()
    page.get_by_label("Examples", exact=True).select_option(file_id)
    for name, value in (("max steps", "12"), ("checkpoint every", "6"), ("max seq length", "64")):
        page.get_by_label(name, exact=True).fill(value)
    page.get_by_label("Register the result as (model name)").fill(model)
    page.get_by_label("Weights as registered").select_option("bfloat16")
    check_page(page, "fine-tuning", screenshots)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page).to_have_url(re.compile(r"/fine-tuning/jobs/ftjob-"))

    # While the job runs the chart gains points (the page polls and redraws).
    points_while_running: set[int] = set()

    def finished() -> bool:
        status = page.locator("#job-status").get_attribute("data-status")
        points = int(page.locator("#loss-points").get_attribute("data-points") or 0)
        if status == "running" and points:
            points_while_running.add(points)
        return status in ("succeeded", "failed", "cancelled")

    wait_until(finished, what="the job to finish", timeout=300, interval=0.2)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    assert len(points_while_running) >= 2, points_while_running
    assert page.locator("#loss-chart canvas").count() == 1
    check_page(page, "job", screenshots)

    page.goto(f"{UI}/models")
    section = page.locator(f"section[data-model='{model}']")
    expect(section.locator("tr[data-version='1']")).to_contain_text("ready")
    expect(section.locator("tr[data-version='1'] [data-role=sha256]").first).to_have_attribute(
        "title", re.compile(r"^[0-9a-f]{64}$")
    )
    page.on("dialog", lambda dialog: dialog.accept())
    section.get_by_label("Point production at").select_option("1")
    section.get_by_label("I confirm this promotion or roll-back").check()
    section.get_by_role("button", name="Move alias").click()
    expect(page.locator(".notice")).to_contain_text(f"production of {model} now points at version 1")
    expect(page.locator(f"section[data-model='{model}'] [data-alias=production]")).to_have_text("production → v1")
    check_page(page, "models", screenshots)


# --- prompts -------------------------------------------------------------------------------------------


def test_edit_a_prompt_compare_two_versions_and_render_one(signed_in: Page, screenshots: Path) -> None:
    page = signed_in
    name = f"ui-greeting-{RUN}"
    page.goto(f"{UI}/prompts")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("User message template").fill("Greet {{ person }} in one sentence.")
    page.get_by_label("Name 1").fill("person")
    page.get_by_label("required").first.check()
    check_page(page, "prompts", screenshots)
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(f"{UI}/prompts/{name}")

    page.get_by_label("User message template").fill("Greet {{ person }} warmly, {{ times }} times.")
    page.get_by_label("Name 2").fill("times")
    page.get_by_label("Type 2").select_option("integer")
    page.get_by_label("What changed").fill("warmer, repeated")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#versions tr[data-version='2']")).to_contain_text("warmer, repeated")

    page.get_by_label("Left").select_option("1")
    page.get_by_label("Right").select_option("2")
    page.get_by_role("button", name="Compare").click()
    changed = page.locator("#diff tr.replace").first
    expect(changed.locator("td").first).to_contain_text("in one sentence")
    expect(changed.locator("td").last).to_contain_text("warmly, {{ times }} times")

    page.get_by_label("person (string, required)").fill("<b>Ada</b>")
    page.get_by_label("times (integer)").fill("2")
    page.get_by_role("button", name="Render").click()
    rendered = page.locator("#rendered-text")
    expect(rendered).to_contain_text("Greet <b>Ada</b> warmly, 2 times.")
    assert page.locator("#rendered b").count() == 0  # user text shown as text
    check_page(page, "prompt", screenshots)


# --- system --------------------------------------------------------------------------------------------


def test_the_system_page_lists_every_app_and_this_keys_usage(signed_in: Page, screenshots: Path) -> None:
    page = signed_in
    page.goto(f"{UI}/system")
    rows = page.locator("#system-apps tr[data-app]")
    expect(rows).to_have_count(len(SERVICES))
    assert {rows.nth(i).get_attribute("data-app") for i in range(len(SERVICES))} == SERVICES
    expect(page.locator("[data-role=platform-status]")).to_have_text("ready")
    expect(page.locator("#usage")).to_contain_text("Requests")
    check_page(page, "system", screenshots)


def test_platform_refusals_are_shown_in_words(signed_in: Page) -> None:
    page = signed_in
    # A 404 from the platform, in words, on a real page.
    response = page.goto(f"{UI}/documents/doc-does-not-exist-{RUN}")
    assert response is not None and response.status == 404
    expect(page.locator("#problem")).to_contain_text("no document")
    # A 422 that names the field: a job whose step count is not a number.
    page.goto(f"{UI}/fine-tuning")
    page.get_by_label("JSONL file of chat examples").set_input_files(
        {"name": "refused.jsonl", "mimeType": "application/jsonl", "buffer": training_examples()}
    )
    page.locator("form[action='/fine-tuning/files'] button").click()
    expect(page.locator(".notice")).to_contain_text("Uploaded file-")
    page.get_by_label("max steps", exact=True).fill("lots")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#problem")).to_contain_text("(422)")
    expect(page.locator("#problem")).to_contain_text("max_steps")
