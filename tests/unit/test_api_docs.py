"""Every app's /docs: Swagger UI from the app's own files, no URL of another host, no ReDoc.

Each app is built in process (its lifespan never runs) and asked for its pages. The assets are
the copies `scripts/ui-assets.sh` makes (`make setup`); the browser check is tests/ui/test_api_docs_in_chromium.py.
"""

from __future__ import annotations

import importlib
import re
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from genai_platform import api_docs

APPS = ("gateway", "ingestion", "features", "registry", "inference", "prompts", "guard", "training", "monitor", "ui")
TOKEN = "app-token-for-tests-0123456789"
SIDECAR = {"dapr-api-token": TOKEN}
ASSETS = {
    "/docs/static/vendor/swagger-ui-bundle.js": "text/javascript",
    "/docs/static/vendor/swagger-ui.css": "text/css",
    "/docs/static/vendor/favicon-32x32.png": "image/png",
    "/docs/static/swagger-ui-init.js": "text/javascript",
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# Where a page names another resource: attributes that take a URL, CSS url(), and any bare absolute URL.
URL_ATTRIBUTE = re.compile(r"""\b(?:src|href|action|srcset|poster|data-[\w-]*url)\s*=\s*["']([^"']*)["']""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]*)""")
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s"'<>()]+""")


def build(app_id: str) -> FastAPI:
    settings_type = getattr(importlib.import_module(f"{app_id}.settings"), f"{app_id.capitalize()}Settings")
    settings = settings_type.model_validate({"APP_ID": app_id, "APP_PORT": "1", "APP_API_TOKEN": TOKEN})
    return importlib.import_module(f"{app_id}.app").create_app(settings)


def off_loopback(urls: list[str]) -> list[str]:
    """The URLs that name a host (absolute or protocol-relative) other than this machine's loopback."""
    return [url for url in urls if urlsplit(url).netloc and urlsplit(url).hostname not in LOOPBACK]


def referenced_urls(html: str) -> list[str]:
    return [*URL_ATTRIBUTE.findall(html), *CSS_URL.findall(html), *ABSOLUTE_URL.findall(html)]


@pytest.fixture(scope="module")
def clients() -> dict[str, TestClient]:
    return {app_id: TestClient(build(app_id)) for app_id in APPS}


def test_the_url_check_catches_what_a_cdn_page_would_load() -> None:
    cdn_page = (
        '<link href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">'
        "<script src='//unpkg.com/x.js'></script><style>a{background:url(http://fonts.example/f.woff)}</style>"
        '<a href="/docs/static/x.js"></a><img src="http://127.0.0.1:8080/a.png">'
    )
    assert {urlsplit(url).hostname for url in off_loopback(referenced_urls(cdn_page))} == {
        "cdn.jsdelivr.net",
        "unpkg.com",
        "fonts.example",
    }


@pytest.mark.parametrize("app_id", APPS)
def test_every_apps_docs_page_names_only_its_own_files(clients: dict[str, TestClient], app_id: str) -> None:
    page = clients[app_id].get("/docs", headers=SIDECAR)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert off_loopback(referenced_urls(page.text)) == []
    named = URL_ATTRIBUTE.findall(page.text)
    assert set(named) == {*ASSETS, "/openapi.json"}
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "unsafe" not in policy
    for path, content_type in ASSETS.items():
        asset = clients[app_id].get(path, headers=SIDECAR)
        assert asset.status_code == 200, path
        assert asset.headers["content-type"].split(";")[0] == content_type, path
        assert asset.content, path


@pytest.mark.parametrize("app_id", APPS)
def test_no_app_serves_redoc_or_fastapis_cdn_page(clients: dict[str, TestClient], app_id: str) -> None:
    for path in ("/redoc", "/docs/oauth2-redirect"):
        assert clients[app_id].get(path, headers=SIDECAR).status_code == 404, path


def test_swagger_uis_stylesheet_loads_nothing_from_elsewhere(clients: dict[str, TestClient]) -> None:
    css = clients["gateway"].get("/docs/static/vendor/swagger-ui.css").text
    assert CSS_URL.findall(css), "expected the stylesheet's data: images"
    assert [url for url in CSS_URL.findall(css) if not url.startswith("data:")] == []
    assert "@import" not in css


def test_the_gateways_docs_and_their_files_are_open_like_its_public_api(clients: dict[str, TestClient]) -> None:
    gateway = clients["gateway"]
    assert gateway.get("/docs").status_code == 200
    for path in ASSETS:
        assert gateway.get(path).status_code == 200, path
    # Only under /docs: the rest of the library's files are not reachable this way.
    assert gateway.get("/docs/static/../api_docs.py").status_code == 404


def test_an_internal_apps_docs_and_files_answer_its_sidecar_only(clients: dict[str, TestClient]) -> None:
    registry = clients["registry"]
    for path in ("/docs", *ASSETS):
        assert registry.get(path).status_code == 401, path


def test_the_uis_docs_and_openapi_document_answer_its_sidecar_only_while_its_pages_stay_open(
    clients: dict[str, TestClient],
) -> None:
    # The ui is open to browsers at `/` (sign-in sessions guard its pages); its API docs are not
    # for the public: they were, through that open prefix (a reviewer found the README said otherwise).
    ui = clients["ui"]
    for path in ("/docs", "/openapi.json", *ASSETS):
        assert ui.get(path).status_code == 401, path
        assert ui.get(path, headers=SIDECAR).status_code == 200, path
    assert ui.get("/healthz").status_code == 200
    assert ui.get("/", follow_redirects=False).status_code != 401


def test_the_page_escapes_a_root_path_in_every_attribute() -> None:
    root_path = '/p"><script>alert(1)</script><a x="'
    page = api_docs.docs_page('A <b> & "c"', root_path, "/openapi.json")
    assert "<script>alert" not in page and page.count("<script") == 2  # the page's own two
    escaped = "/p&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;a x=&quot;"
    assert set(URL_ATTRIBUTE.findall(page)) == {f"{escaped}{path}" for path in (*ASSETS, "/openapi.json")}
    assert "<title>A &lt;b&gt; &amp; &quot;c&quot; - Swagger UI</title>" in page


def test_docs_say_how_to_install_swagger_ui_when_its_files_are_missing(
    clients: dict[str, TestClient], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setattr(api_docs, "VENDOR", tmp_path / "vendor")
    answer = clients["gateway"].get("/docs")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert "scripts/ui-assets.sh" in answer.json()["detail"]
