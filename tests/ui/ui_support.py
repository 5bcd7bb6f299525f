"""What the web console's browser tests share: addresses, sign-in, and the per-page check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from harness import ROOT

UI = "http://127.0.0.1:8090"
GATEWAY = "http://127.0.0.1:8080"
INFERENCE_METRICS = "http://127.0.0.1:8105/metrics"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / ".data" / "ui-screenshots"
# Headless, and nothing that reaches for the network on its own (updates, sync, QUIC probes).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def api_key(secrets: dict[str, str]) -> str:
    return secrets["gateway-api-keys"].split(",")[0]


def sign_in(page: Page, key: str) -> None:
    page.goto(f"{UI}/signin")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{UI}/chat")


_axe = Axe()


def check_page(page: Page, name: str, screenshots: Path) -> None:
    """Save a screenshot of the page as it is, and fail on any serious or critical axe-core violation."""
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    results = _axe.run(page)
    bad: list[dict[str, Any]] = [
        v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")
    ]
    assert not bad, f"{name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad
    )
