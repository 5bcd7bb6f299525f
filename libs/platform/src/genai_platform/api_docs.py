"""Every app's API docs page (`/docs`): Swagger UI served from the app itself, never from a CDN.

FastAPI's default page loads Swagger UI from cdn.jsdelivr.net and a favicon from
fastapi.tiangolo.com, so it is blank where the platform runs offline. Here, as FastAPI's
"Self-hosting JavaScript and CSS for docs" shows, the default page is off (`docs_url=None`) and
`/docs` loads `swagger-ui-dist`'s files from `/docs/static/`: pinned by
libs/platform/frontend/package-lock.json and copied next to this module by scripts/ui-assets.sh
(`make setup`). The assets live under `/docs`, so whoever may read `/docs` (the gateway's
`open_prefixes`, or the sidecar with the app token) may read them too.

The page is written here rather than by `fastapi.openapi.docs.get_swagger_ui_html` because that
one starts Swagger UI with an inline script; starting it from a file (`swagger-ui-init.js`) lets
the page carry a Content-Security-Policy that refuses inline scripts and every other origin.
ReDoc is off: it would be a second copy of the same document, loaded from a CDN too.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from genai_platform.errors import Problem, problem_response

DOCS_PATH = "/docs"
ASSETS_PATH = f"{DOCS_PATH}/static"
ASSETS = Path(__file__).parent / "static"
# The files scripts/ui-assets.sh copies from swagger-ui-dist (git-ignored).
VENDOR = ASSETS / "vendor"
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")

# The page and Swagger UI talk to this origin only: its own files, the OpenAPI document, "Try it out".
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def docs_page(title: str, root_path: str, openapi_url: str) -> str:
    """The HTML of the Swagger UI page: every URL in it is a path on this app.

    `root_path` comes from the proxy in front of the app (ASGI's `root_path`): escaped, quotes
    included, wherever it lands in an attribute, so it can never end one or start a tag.
    """
    assets = escape(f"{root_path}{ASSETS_PATH}", quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{escape(title, quote=True)} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/vendor/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/vendor/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(root_path + openapi_url, quote=True)}"></div>
<script src="{assets}/vendor/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui-init.js"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI) -> None:
    """Serve `/docs` (Swagger UI) and its files under `/docs/static/` on an app built with `docs_url=None`."""
    openapi_url = app.openapi_url
    assert openapi_url is not None, "the docs page needs the app's OpenAPI document"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def api_docs(request: Request) -> Response:
        if not (VENDOR / SWAGGER_UI_FILES[0]).is_file():
            return problem_response(
                Problem(503, "Swagger UI's files are not installed here: run scripts/ui-assets.sh (make setup does)."),
                request,
            )
        root_path = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(docs_page(app.title, root_path, openapi_url), headers=PAGE_HEADERS)

    # check_dir=False: an app still starts before `make setup` copied the files; /docs says why it is empty.
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS, check_dir=False), name="api-docs-assets")
