"""The web console in Debian's headless Chromium, against the whole platform (the `platform` fixture).

Playwright drives /usr/bin/chromium through `executable_path` (its own browser download cannot
work offline); the flags keep Chromium from reaching for the network,
and Playwright starts it on a fresh temporary profile. axe-core comes bundled
with axe-playwright-python. Screenshots of every page land in .data/ui-screenshots/ (git-ignored).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from harness import SERVICES, ManagedProcess, wait_until
from ui_support import CHROMIUM, CHROMIUM_FLAGS, GATEWAY, SCREENSHOTS, UI, api_key, sign_in

# Pages here wait on a real platform (ingestion, indexing, a model on CPU): assertions wait longer.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="session")
def console(platform: ManagedProcess, secrets: dict[str, str]) -> str:
    """The ui's address, once every app of the platform is ready behind the gateway."""
    headers = {"Authorization": f"Bearer {api_key(secrets)}"}

    def all_ready() -> bool:
        body = httpx.get(f"{GATEWAY}/v1/system/health", headers=headers, timeout=30).json()
        return body.get("status") == "ready" and set(body["apps"]) == SERVICES

    wait_until(all_ready, what="every app to be ready", timeout=300, interval=1.0, watch=[platform])
    wait_until(lambda: httpx.get(f"{UI}/readyz").status_code == 200, what="the ui", timeout=60, watch=[platform])
    return UI


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: run `scripts/infra.sh install` (make setup does)")
    # Playwright gives the browser a fresh, temporary profile of its own.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def signed_in(console: str, context: BrowserContext, secrets: dict[str, str]) -> Page:
    page = context.new_page()
    sign_in(page, api_key(secrets))
    return page
