"""Web console benchmark, in Debian's headless Chromium against the whole platform.

The platform is the one already running (`make up`), or one this script starts the same way
(scripts/run-platform.sh) and stops afterwards.

Measured:
  (a) first contentful paint of each page (the browser's own `paint` timing), median of --loads;
  (b) time to first streamed text of one question: the chat page (click Send -> first answer
      text on screen) against the same request by the official `openai` client through the
      gateway (first content delta), median of --asks, same question, greedy, same max_tokens;
  (c) a loss chart of 10,000 points (uPlot, as the job page draws it): time to build and draw it,
      to redraw it with every point (what each poll does), and how soon after a redraw starts the
      main thread runs a queued task (the page stays interactive).

Prints one table per measurement and writes JSON to bench/results/.

    uv run python bench/ui/run.py [--loads 5] [--asks 5] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "ui"))

from harness import SERVICES, ManagedProcess, read_secrets, wait_until  # noqa: E402
from ui_support import CHROMIUM, CHROMIUM_FLAGS, GATEWAY, UI, api_key, sign_in  # noqa: E402

PAGES = ("/chat", "/documents", "/fine-tuning", "/models", "/prompts", "/system")
QUESTION = "Name three colours of the rainbow."
FIRST_TEXT = """() => new Promise((resolve) => {
  const before = document.querySelectorAll('#conversation article.turn').length;
  const start = performance.now();
  const seen = () => {
    const turns = document.querySelectorAll('#conversation article.turn');
    const turn = turns.length > before ? turns[turns.length - 1] : null;  // the new answer, not an old one
    const text = turn?.querySelector('[data-role=answer-text]')?.textContent ?? '';
    if (text.trim()) { observer.disconnect(); resolve(performance.now() - start); }
  };
  const observer = new MutationObserver(seen);
  observer.observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});
  setTimeout(() => { observer.disconnect(); resolve(null); }, 120000);  // no text: counted as a failure
  document.getElementById('send').click();
})"""
BIG_CHART = """async () => {
  const { lossChart } = await import('/static/job.js');
  const holder = document.createElement('div');
  holder.style.width = '900px';
  document.body.append(holder);
  const steps = Array.from({length: 10000}, (_, i) => i);
  const train = steps.map((s) => 2.5 * Math.exp(-s / 3000) + 0.05 * Math.sin(s / 7));
  const held = steps.map((s) => (s % 100 === 0 ? 2.6 * Math.exp(-s / 3000) : null));
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  let start = performance.now();
  const chart = lossChart(holder, [steps, train, held]);
  await frame();
  const drawn = performance.now() - start;
  // What the job page does on every poll: the whole series again.
  start = performance.now();
  chart.setData([steps, train, held]);
  await frame();
  const redrawn = performance.now() - start;
  // Interactive: how soon after a redraw the main thread runs a queued task.
  start = performance.now();
  chart.setData([steps, train, held]);
  const free = await new Promise((r) => setTimeout(() => r(performance.now() - start), 0));
  return { drawn, redrawn, free };
}"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def first_paints(page: Page, loads: int) -> dict[str, float]:
    paints: dict[str, float] = {}
    for path in PAGES:
        samples = []
        for _ in range(loads):
            page.goto(f"{UI}{path}", wait_until="load")
            fcp = page.evaluate(
                "() => performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint')?.startTime"
            )
            if fcp is not None:
                samples.append(float(fcp))
        paints[path] = median(samples)
    return paints


def chat_page_ttft(page: Page, asks: int, max_tokens: int) -> list[float]:
    samples = []
    for _ in range(asks):
        page.goto(f"{UI}/chat")
        page.get_by_role("button", name="New conversation").click()
        # Functions, not expression strings: Playwright evals a string in the page, which the CSP refuses.
        page.wait_for_function("() => document.querySelectorAll('#conversation article.turn').length === 0")
        page.get_by_label("Question").fill(QUESTION)
        page.get_by_label("Longest answer (tokens)").fill(str(max_tokens))
        first = page.evaluate(FIRST_TEXT)
        samples.append(float(first) if first is not None else float("nan"))
        # The next ask starts once this answer has ended (a running one keeps Send disabled).
        page.wait_for_function(
            "() => document.querySelector('#conversation article.turn') !== null && "
            "document.querySelector('#conversation article.turn[data-status=running]') === null",
            timeout=120_000,
        )
    return samples


def client_ttft(key: str, asks: int, max_tokens: int) -> list[float]:
    client = OpenAI(base_url=f"{GATEWAY}/v1", api_key=key, max_retries=0, timeout=300)
    samples = []
    for _ in range(asks):
        start = time.perf_counter()
        first = None
        stream = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = (time.perf_counter() - start) * 1000
        samples.append(first if first is not None else float("nan"))
    return samples


def platform_ready(key: str) -> bool:
    try:
        body = httpx.get(f"{GATEWAY}/v1/system/health", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return False
    return body.get("status") == "ready" and set(body.get("apps", {})) == SERVICES


def start_platform(key: str, log: Path) -> ManagedProcess | None:
    """None when a platform already answers; else the `dapr run -f` process, once every app is ready."""
    if platform_ready(key):
        return None
    process = ManagedProcess(
        "dapr run -f", ["bash", str(ROOT / "scripts" / "run-platform.sh"), "default"], dict(os.environ), log
    ).start()
    wait_until(lambda: platform_ready(key), what="every app to be ready", timeout=300, interval=1.0, watch=[process])
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--asks", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    key = api_key(read_secrets())
    platform = start_platform(key, Path(tempfile.mkdtemp()) / "platform.log")
    try:
        measured = measure(key, args)
    finally:
        if platform is not None:
            platform.signal(signal.SIGINT)  # the CLI stops every app and sidecar, as on Ctrl-C
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert platform.popen is not None
                platform.popen.wait(30)
            platform.stop()
    report(args, *measured)


def measure(key: str, args: argparse.Namespace) -> tuple[dict[str, float], list[float], list[float], dict[str, float]]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, key)
        paints = first_paints(page, args.loads)
        page_ttft = chat_page_ttft(page, args.asks, args.max_tokens)
        page.goto(f"{UI}/chat")
        chart = page.evaluate(BIG_CHART)
        browser.close()
    openai_ttft = client_ttft(key, args.asks, args.max_tokens)
    return paints, page_ttft, openai_ttft, chart


def report(
    args: argparse.Namespace,
    paints: dict[str, float],
    page_ttft: list[float],
    openai_ttft: list[float],
    chart: dict[str, float],
) -> None:

    print(f"\nFirst contentful paint (ms, median of {args.loads} loads)")  # noqa: T201
    print(f"{'page':<14}{'FCP ms':>10}")  # noqa: T201
    for path, value in paints.items():
        print(f"{path:<14}{value:>10.1f}")  # noqa: T201
    page_median, client_median = median(page_ttft), median(openai_ttft)
    print(f"\nTime to first streamed text (ms, median of {args.asks}, max_tokens={args.max_tokens})")  # noqa: T201
    print(f"{'caller':<22}{'TTFT ms':>10}{'ratio':>8}")  # noqa: T201
    print(f"{'openai client':<22}{client_median:>10.1f}{1.0:>8.2f}")  # noqa: T201
    print(f"{'chat page (browser)':<22}{page_median:>10.1f}{page_median / client_median:>8.2f}")  # noqa: T201
    print("\nLoss chart of 10,000 points (uPlot)")  # noqa: T201
    print(  # noqa: T201
        f"build + first draw: {chart['drawn']:.1f} ms; redraw with all points (each poll): {chart['redrawn']:.1f} ms; "
        f"main thread free again {chart['free']:.1f} ms after a redraw starts"
    )

    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"ui-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "first_contentful_paint_ms": paints,
                "ttft_ms": {"chat_page": page_ttft, "openai": openai_ttft},
                "chart": chart,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out.relative_to(ROOT)}")  # noqa: T201


if __name__ == "__main__":
    main()
