"""The web console: chat, documents, fine-tuning, models, prompts and system health.

Server-rendered pages (Jinja2, autoescaped) with htmx for partial updates and small ES modules
where the browser must work (the chat's stream reader, the loss chart). Every call to the
platform goes through this app's sidecar to the gateway, as the signed-in user.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from genai_platform.contracts.documents import MULTIPART_FRAMING_BYTES
from genai_platform.service import create_service
from ui.answers import AnswerRunner
from ui.pages import UPLOAD_FILES, CsrfRefused, SignInRequired, page, router, wants_json
from ui.platform_api import Gateway, PlatformError
from ui.sessions import SessionStore
from ui.settings import UiSettings
from ui.web_security import SecurityHeadersMiddleware

STATIC = Path(__file__).parent / "static"


async def _sign_in_required(request: Request, _: Exception) -> Response:
    if wants_json(request):
        return JSONResponse({"message": "Sign in first."}, status_code=401)
    return RedirectResponse("/signin", status_code=303)


async def _csrf_refused(request: Request, _: Exception) -> Response:
    message = "This form was refused: its CSRF token is missing or out of date. Reload the page and try again."
    if wants_json(request):
        return JSONResponse({"message": message}, status_code=403)
    return page(request, "error.html", 403, message=message)


async def _platform_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, PlatformError)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    if wants_json(request):
        return JSONResponse({"message": error.message}, status_code=error.status, headers=headers)
    response = page(request, "error.html", error.status, message=error.message)
    if headers:
        response.headers.update(headers)
    return response


def create_app(settings: UiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sidecar = app.state.sidecar
        secret = settings.session_secret.get_secret_value() if settings.session_secret else None
        app.state.sessions = SessionStore(sidecar, secret, settings.session_ttl_seconds)
        app.state.gateway = Gateway(sidecar, settings.gateway_app_id, settings.request_timeout_seconds)
        app.state.answers = AnswerRunner(
            sidecar,
            app.state.gateway,
            ttl_seconds=settings.answer_ttl_seconds,
            timeout=settings.generation_timeout_seconds,
        )
        yield

    app = create_service(
        settings,
        title="Web UI",
        description=__doc__,
        routers=[router],
        lifespan=lifespan,
        # Browsers call every page directly; sign-in sessions, not the sidecar's token, guard them.
        open_prefixes=("/",),
        # No sidecar limits what a browser sends here, and the Documents page sends up to UPLOAD_FILES
        # files of UI_MAX_UPLOAD_BYTES each in one form: that is the limit. Such a form is held on
        # disk past 1 MiB (genai_platform.text), and a page's other forms in memory up to 16 MiB.
        max_body_bytes=UPLOAD_FILES * (settings.max_upload_bytes + MULTIPART_FRAMING_BYTES),
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(PlatformError, _platform_error)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
