"""The gateway's /docs in headless Chromium, offline: Swagger UI renders from the gateway's own files.

The gateway runs as its own process (`python -m gateway`, as dapr.yaml starts it) with the app
token check on and no sidecar: /docs, its files and /openapi.json need neither. Every request the
page makes is recorded; one to any host but 127.0.0.1 is refused and fails the test, as it would
fail where the platform runs air-gapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Route, expect

from harness import ServiceApp

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def gateway(log_dir: Path) -> Iterator[ServiceApp]:
    app = ServiceApp("gateway", log_dir, env={"APP_API_TOKEN": "app-token-for-the-docs-test-0123"}).start()
    try:
        app.wait_alive(timeout=60)
        yield app
    finally:
        assert app.process is not None
        app.process.stop()


def test_the_gateways_docs_render_every_operation_with_no_request_off_loopback(
    gateway: ServiceApp, browser: Browser
) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    operations = sum(1 for item in document["paths"].values() for method in item if method in HTTP_METHODS)
    requested: list[str] = []
    refused: list[str] = []
    errors: list[str] = []

    def only_loopback(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if urlsplit(url).hostname == "127.0.0.1" or url.startswith("data:"):
            route.continue_()
        else:
            refused.append(url)
            route.abort("internetdisconnected")

    def keep_errors(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    context = browser.new_context()
    try:
        context.route("**/*", only_loopback)
        page = context.new_page()
        page.on("console", keep_errors)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{gateway.url}/docs")
        chat = page.locator('.opblock-post .opblock-summary-path[data-path="/v1/chat/completions"]')
        expect(chat).to_be_visible(timeout=15_000)
        expect(page.locator(".opblock")).to_have_count(operations)
        # Opening an operation renders its schema from the same document: still nothing from elsewhere.
        chat.click()
        expect(page.locator(".opblock-post.is-open .opblock-body")).to_be_visible()
        page.wait_for_load_state("networkidle")
    finally:
        context.close()

    assert refused == []
    assert f"{gateway.url}/docs/static/vendor/swagger-ui-bundle.js" in requested
    assert f"{gateway.url}/openapi.json" in requested
    # A script error, a failed load or anything the page's Content-Security-Policy blocked (an inline
    # style or script, another origin) is logged as a console error.
    assert errors == []
