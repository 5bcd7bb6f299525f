"""The console's pages: thin routes that ask the gateway (as the signed-in user) and render templates.

Every state-changing route depends on `WriteSessionDep`, which refuses a request whose CSRF token
(form field `csrf_token`, or header `X-CSRF-Token` from the page's scripts) is not the session's.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from genai_platform.contracts.documents import COLLECTION_PATTERN
from genai_platform.contracts.prompts import PROMPT_LABEL_PATTERN, PROMPT_NAME_PATTERN
from ui import views
from ui.answers import Answer, AnswerRunner
from ui.markdown import render_markdown
from ui.platform_api import Gateway, PlatformError
from ui.sessions import SESSION_COOKIE, Session, SessionStore
from ui.settings import UiSettings

# Starlette turns autoescaping on for .html templates: every value a page shows is escaped.
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["markdown"] = render_markdown
TEMPLATES.env.filters["server_timing"] = views.parse_server_timing
# The rules the platform checks a name by, as the forms' `pattern` hints (the same figures, never copies).
TEMPLATES.env.globals.update(
    collection_pattern=COLLECTION_PATTERN,
    prompt_name_pattern=PROMPT_NAME_PATTERN,
    prompt_label_pattern=PROMPT_LABEL_PATTERN,
)
LOGIN_CSRF_COOKIE = "ui_signin_csrf"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The loss chart reads at most this many pages of 2,000 job events (40,000 steps and evaluations).
LOSS_PAGES = 20
# The most files one upload of the Documents page takes.
UPLOAD_FILES = 50

router = APIRouter()


class SignInRequired(Exception):
    """No valid session: pages redirect to sign-in, scripts get a 401."""


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept or "text/event-stream" in accept or request.headers.get("hx-request") == "true"


async def current_session(request: Request) -> Session:
    sessions: SessionStore = request.app.state.sessions
    session = await sessions.load(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def presented_csrf(request: Request) -> str | None:
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media in ("application/x-www-form-urlencoded", "multipart/form-data"):
            value = (await request.form()).get("csrf_token")
            presented = value if isinstance(value, str) else None
    return presented


async def checked_session(request: Request, session: SessionDep) -> Session:
    if request.method in WRITE_METHODS and not session.csrf_matches(await presented_csrf(request)):
        raise CsrfRefused
    return session


WriteSessionDep = Annotated[Session, Depends(checked_session)]


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    context.setdefault("csrf_token", session.csrf_token if session else "")
    context.setdefault("signed_in", session is not None)
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def optional(call: Any, default: Any = None) -> tuple[Any, str | None]:
    """A call's answer, or `default` and the words of its error (a part of a page that may fail alone)."""
    try:
        return await call, None
    except PlatformError as error:
        return default, error.message


# --- sign-in ------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def home() -> RedirectResponse:
    return see_other("/chat")


@router.get("/signin", response_class=HTMLResponse, summary="The sign-in page")
async def signin_page(request: Request, error: str | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = page(request, "signin.html", csrf_token=token, error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        await request.app.state.sessions.sign(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=3600,
    )
    return response


@router.post("/signin", summary="Sign in with a gateway API key (kept server-side)")
async def signin(request: Request) -> Response:
    sessions: SessionStore = request.app.state.sessions
    form = await request.form()
    expected = await sessions.unsign(request.cookies.get(LOGIN_CSRF_COOKIE))
    presented = form.get("csrf_token")
    if expected is None or not isinstance(presented, str) or not hmac.compare_digest(presented, expected):
        raise CsrfRefused
    api_key = str(form.get("api_key") or "").strip()
    if not api_key:
        return page(request, "signin.html", 422, csrf_token=presented, error="Enter an API key.")
    try:
        # The key is good when the gateway answers a keyed read with it.
        await gateway(request).request("GET", "v1/usage", api_key)
    except PlatformError as error:
        message = "The platform refused this API key." if error.status == 401 else error.message
        return page(request, "signin.html", 401 if error.status == 401 else 503, csrf_token=presented, error=message)
    _, cookie = await sessions.create(api_key)
    response = see_other("/chat")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=sessions.ttl_seconds,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/signout", summary="Sign out: the session and the key it held are deleted")
async def signout(request: Request, session: WriteSessionDep) -> RedirectResponse:
    await request.app.state.sessions.delete(session)
    response = see_other("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- chat ---------------------------------------------------------------------------------------


async def collections_of(request: Request, api_key: str) -> list[str]:
    listing = await gateway(request).json("GET", "v1/documents", api_key, params={"limit": 500})
    return sorted({doc["collection"] for doc in listing.get("documents", [])})


@router.get("/chat", response_class=HTMLResponse, summary="The chat page")
async def chat_page(request: Request, session: SessionDep, answer: str | None = None) -> HTMLResponse:
    runner: AnswerRunner = request.app.state.answers
    key = session.api_key
    (models, models_error), (collections, collections_error) = await asyncio.gather(
        optional(gateway(request).json("GET", "v1/models", key), {"data": []}),
        optional(collections_of(request, key), []),
    )
    history = [a for a in [await runner.get(i, session.id) for i in session.conversation] if a is not None]
    current = next((a for a in history if a.id == answer), None) if answer else None
    if answer and current is None:
        current = await runner.get(answer, session.id)
        if current is not None:
            history.append(current)
    return page(
        request,
        "chat.html",
        nav="chat",
        max_tokens=request.app.state.settings.max_tokens,
        models=[m["id"] for m in (models or {}).get("data", [])],
        collections=collections,
        errors=[e for e in (models_error, collections_error) if e],
        history=history,
        following=[a.id for a in history if a.running],
    )


@router.post("/chat/answers", summary="Ask: starts an answer on the server; the page follows its events")
async def ask(request: Request, session: WriteSessionDep) -> JSONResponse:
    form = await request.form()
    question = str(form.get("question") or "").strip()
    if not question:
        return JSONResponse({"message": "Write a question first."}, status_code=422)
    collection = str(form.get("collection") or "") or None
    model = str(form.get("model") or "")
    runner: AnswerRunner = request.app.state.answers
    history = [a for a in [await runner.get(i, session.id) for i in session.conversation[-3:]] if a is not None]
    messages: list[dict[str, str]] = []
    for turn in history:
        if turn.status == "done" and turn.text:
            messages += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.text}]
    messages.append({"role": "user", "content": question})
    body: dict[str, Any] = {"model": model or "smollm2", "messages": messages, "temperature": 0}
    try:
        max_tokens = views.answer_length(str(form.get("max_tokens") or ""), request.app.state.settings.max_tokens)
    except views.FormError as error:
        return JSONResponse({"message": str(error), "field": "max_tokens"}, status_code=422)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if collection:
        body["collection"] = collection
    answer = runner.start(session.id, session.api_key, body, question, collection)
    session.conversation = [*session.conversation, answer.id][-20:]
    await request.app.state.sessions.save(session)
    return JSONResponse({"id": answer.id, "url": f"/chat?answer={answer.id}"}, status_code=202)


def answer_fragment(request: Request, answer: Answer) -> str:
    template = TEMPLATES.get_template("_answer.html")
    return template.render(answer=answer, request=request)


@router.get("/chat/answers/{answer_id}/events", summary="An answer as server-sent events, until it ends")
async def answer_events(request: Request, answer_id: str, session: SessionDep) -> Response:
    runner: AnswerRunner = request.app.state.answers
    if await runner.get(answer_id, session.id) is None:
        return JSONResponse({"message": "No such answer in this session."}, status_code=404)

    async def events():
        async for answer in runner.follow(answer_id, session.id):
            payload = {"status": answer.status, "html": answer_fragment(request, answer)}
            yield f"event: answer\ndata: {json.dumps(payload)}\n\n"
        yield "event: end\ndata: {}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.post("/chat/answers/{answer_id}/stop", summary="Stop an answer: generation ends upstream too")
async def stop_answer(request: Request, answer_id: str, session: WriteSessionDep) -> Response:
    stopped = await request.app.state.answers.stop(answer_id, session.id)
    return Response(status_code=204 if stopped else 409)


@router.post("/chat/new", summary="Start a new conversation")
async def new_chat(request: Request, session: WriteSessionDep) -> RedirectResponse:
    session.conversation = []
    await request.app.state.sessions.save(session)
    return see_other("/chat")


@router.get("/chat/answers/{answer_id}/citations/{number}", response_class=HTMLResponse, summary="A cited chunk")
async def citation(request: Request, answer_id: str, number: int, session: SessionDep) -> HTMLResponse:
    answer = await request.app.state.answers.get(answer_id, session.id)
    if answer is None or not 1 <= number <= len(answer.citations):
        return HTMLResponse("<p>This answer has no such source.</p>", status_code=404)
    cited = answer.citations[number - 1]
    document = await gateway(request).json(
        "GET", f"v1/documents/{cited['document_id']}", session.api_key, params={"chunks": "true"}
    )
    chunk = next((c for c in document.get("chunks", []) if c.get("id") == cited.get("chunk_id")), None)
    return page(request, "_citation.html", number=number, cited=cited, document=document, chunk=chunk)


# --- documents ----------------------------------------------------------------------------------


@router.get("/documents", response_class=HTMLResponse, summary="Collections and documents")
async def documents_page(
    request: Request, session: SessionDep, collection: str | None = None, q: str | None = None
) -> HTMLResponse:
    key = session.api_key
    everything, error = await optional(
        gateway(request).json("GET", "v1/documents", key, params={"limit": 500}), {"documents": []}
    )
    documents = everything.get("documents", [])
    collections = sorted({d["collection"] for d in documents})
    shown = [d for d in documents if not collection or d["collection"] == collection]
    results, search_error = None, None
    if q:
        search = {"query": q, "k": 10, **({"collection": collection} if collection else {})}
        found, search_error = await optional(gateway(request).json("POST", "v1/search", key, json_body=search))
        results = (found or {}).get("results", [])
    return page(
        request,
        "documents.html",
        nav="documents",
        max_upload_bytes=request.app.state.settings.max_upload_bytes,
        documents=list(reversed(shown)),
        collections=collections,
        collection=collection or "",
        q=q or "",
        results=results,
        errors=[e for e in (error, search_error) if e],
        notice=request.query_params.get("notice"),
    )


def too_large(size: int, limit: int) -> str:
    """Why a file of `size` bytes is refused, in the words the page's script uses (upload.js)."""
    return f"{size:,} bytes is over the limit of {limit:,} bytes ({limit / 2**20:.1f} MiB) for one document"


@router.post("/documents/upload", summary="Upload one or more files into a collection")
async def upload_documents(request: Request, session: WriteSessionDep) -> Response:
    settings: UiSettings = request.app.state.settings
    form = await request.form(max_files=UPLOAD_FILES)
    collection = str(form.get("collection") or "default").strip() or "default"
    uploads = [f for f in form.getlist("files") if not isinstance(f, str) and f.filename]
    if not uploads:
        return page(request, "error.html", 422, message="Choose at least one file to upload.")
    added, refused = [], []
    for upload in uploads:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            refused.append(f"{upload.filename}: {too_large(upload.size or len(data), settings.max_upload_bytes)}")
            continue
        encoded = httpx.Request(
            "POST",
            "http://gateway/v1/documents",
            files={"file": (upload.filename, data, upload.content_type or "application/octet-stream")},
            data={"collection": collection, "title": upload.filename},
        )
        try:
            created = await gateway(request).json(
                "POST",
                "v1/documents",
                session.api_key,
                content=encoded.read(),
                headers={"Content-Type": encoded.headers["Content-Type"]},
            )
            added.append(created["id"])
        except PlatformError as error:
            refused.append(f"{upload.filename}: {error.message}")
    if refused:
        return page(request, "error.html", 422, message="Some files were not added: " + "; ".join(refused))
    return see_other(f"/documents?collection={collection}&notice=Added+{len(added)}+file(s)")


@router.post("/documents/url", summary="Ingest a web page by its URL")
async def ingest_url(request: Request, session: WriteSessionDep) -> Response:
    form = await request.form()
    collection = str(form.get("collection") or "default").strip() or "default"
    body = {"url": str(form.get("url") or "").strip(), "collection": collection}
    await gateway(request).json("POST", "v1/documents", session.api_key, json_body=body)
    return see_other(f"/documents?collection={collection}&notice=Added+1+page")


@router.get("/documents/{document_id}/status", response_class=HTMLResponse, summary="Searchable yet? (htmx)")
async def document_status(request: Request, document_id: str, session: SessionDep) -> HTMLResponse:
    document = await gateway(request).json("GET", f"v1/documents/{document_id}", session.api_key)
    indexed = await gateway(request).json("GET", f"v1/index/documents/{document_id}", session.api_key)
    chunks = len(indexed.get("chunk_ids") or [])
    searchable = chunks >= max(1, int(document.get("chunk_count") or 0))
    return page(request, "_document_status.html", document=document, chunks=chunks, searchable=searchable)


@router.get("/documents/{document_id}", response_class=HTMLResponse, summary="One document and its chunks")
async def document_page(
    request: Request, document_id: str, session: SessionDep, chunk: str | None = None
) -> HTMLResponse:
    document = await gateway(request).json(
        "GET", f"v1/documents/{document_id}", session.api_key, params={"chunks": "true"}
    )
    return page(request, "document.html", nav="documents", document=document, highlighted=chunk)


@router.post("/documents/{document_id}/delete", summary="Delete a document and its chunks")
async def delete_document(request: Request, document_id: str, session: WriteSessionDep) -> RedirectResponse:
    await gateway(request).request("DELETE", f"v1/documents/{document_id}", session.api_key)
    return see_other("/documents?notice=Deleted+1+document")


# --- models -------------------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse, summary="Registry models, versions, aliases, lineage")
async def models_page(request: Request, session: SessionDep) -> HTMLResponse:
    key = session.api_key
    models, error = await optional(gateway(request).json("GET", "v1/registry/models", key), [])
    serving, serving_error = await optional(gateway(request).json("GET", "v1/models", key), {"data": []})
    catalog = []
    for model in models or []:
        listed = gateway(request).json("GET", f"v1/registry/models/{model['name']}/versions", key)
        versions, _ = await optional(listed, [])
        catalog.append({"model": model, "versions": sorted(versions or [], key=lambda v: -v["version"])})
    return page(
        request,
        "models.html",
        nav="models",
        catalog=catalog,
        serving=(serving or {}).get("data", []),
        errors=[e for e in (error, serving_error) if e],
        notice=request.query_params.get("notice"),
    )


@router.post("/models/{name}/aliases/{alias}", summary="Promote or roll back: point an alias at a version")
async def move_alias(request: Request, name: str, alias: str, session: WriteSessionDep) -> Response:
    form = await request.form()
    version = str(form.get("version") or "")
    if form.get("confirmed") != "yes":
        return page(request, "error.html", 422, message="Tick the confirmation box to move an alias.")
    if not version.isdigit():
        return page(request, "error.html", 422, message="Choose a version number.")
    await gateway(request).json(
        "PUT", f"v1/registry/models/{name}/aliases/{alias}", session.api_key, json_body={"version": int(version)}
    )
    return see_other(f"/models?notice={alias}+of+{name}+now+points+at+version+{version}")


# --- prompts ------------------------------------------------------------------------------------


@router.get("/prompts", response_class=HTMLResponse, summary="Prompt templates")
async def prompts_page(request: Request, session: SessionDep) -> HTMLResponse:
    prompts, error = await optional(gateway(request).json("GET", "v1/prompts", session.api_key), [])
    return page(request, "prompts.html", nav="prompts", prompts=prompts or [], errors=[error] if error else [])


@router.post("/prompts", summary="Create a prompt (version 1) or add a version from the editor")
async def save_prompt(request: Request, session: WriteSessionDep) -> Response:
    form = await request.form()
    name = str(form.get("name") or "").strip()
    draft = views.prompt_draft(form)
    if form.get("new") == "yes":
        await gateway(request).json("POST", "v1/prompts", session.api_key, json_body={"name": name, **draft})
    else:
        await gateway(request).json("POST", f"v1/prompts/{name}/versions", session.api_key, json_body=draft)
    return see_other(f"/prompts/{name}")


@router.get("/prompts/{name}", response_class=HTMLResponse, summary="One prompt: editor, versions, diff, playground")
async def prompt_page(
    request: Request,
    name: str,
    session: SessionDep,
    a: int | None = None,
    b: int | None = None,
    version: int | None = None,
) -> HTMLResponse:
    key = session.api_key
    head = await gateway(request).json("GET", f"v1/prompts/{name}", key)
    versions = await gateway(request).json("GET", f"v1/prompts/{name}/versions", key)
    versions = sorted(versions, key=lambda v: v["version"])
    by_number = {v["version"]: v for v in versions}
    latest = versions[-1] if versions else {}
    diff = None
    if a in by_number and b in by_number:
        diff = views.side_by_side(views.prompt_text(by_number[a]), views.prompt_text(by_number[b]))
    chosen = by_number.get(version or 0, latest)
    return page(
        request,
        "prompt.html",
        nav="prompts",
        head=head,
        versions=versions,
        latest=latest,
        editor=views.editor_fields(latest),
        chosen=chosen,
        variables=views.variable_fields(chosen),
        diff=diff,
        a=a,
        b=b,
        rendered=None,
    )


@router.post("/prompts/{name}/render", response_class=HTMLResponse, summary="Playground: render a version")
async def render_prompt(request: Request, name: str, session: WriteSessionDep) -> Response:
    form = await request.form()
    version = int(str(form.get("version") or "0") or 0)
    variables = views.typed_variables(form)
    rendered = await gateway(request).json(
        "POST", f"v1/prompts/{name}/render", session.api_key, json_body={"version": version, "variables": variables}
    )
    if form.get("action") == "run":
        # Through the real chat pipeline: the gateway renders the same version for the last turn.
        runner: AnswerRunner = request.app.state.answers
        question = views.prompt_preview(rendered)
        body = {
            "model": str(form.get("model") or "smollm2"),
            "messages": [{"role": "user", "content": question}],
            "prompt": {"name": name, "version": version, "variables": variables},
            "temperature": 0,
            "max_tokens": 128,
        }
        answer = runner.start(session.id, session.api_key, body, f"{name} v{version}", None)
        session.conversation = [*session.conversation, answer.id][-20:]
        await request.app.state.sessions.save(session)
        return see_other(f"/chat?answer={answer.id}")
    return page(request, "_rendered.html", rendered=rendered, preview=views.prompt_preview(rendered))


@router.post("/prompts/{name}/labels", summary="Point a label at a version")
async def move_label(request: Request, name: str, session: WriteSessionDep) -> RedirectResponse:
    form = await request.form()
    label = str(form.get("label") or "").strip()
    version = int(str(form.get("version") or "0") or 0)
    path = f"v1/prompts/{name}/labels/{label}"
    await gateway(request).json("PUT", path, session.api_key, json_body={"version": version})
    return see_other(f"/prompts/{name}")


# --- fine-tuning --------------------------------------------------------------------------------


@router.get("/fine-tuning", response_class=HTMLResponse, summary="Fine-tuning jobs, files, workflows")
async def fine_tuning_page(request: Request, session: SessionDep) -> HTMLResponse:
    key = session.api_key
    (jobs, jobs_error), (files, files_error), (collections, _) = await asyncio.gather(
        optional(gateway(request).json("GET", "v1/fine_tuning/jobs", key, params={"limit": 50}), {"data": []}),
        optional(gateway(request).json("GET", "v1/files", key), {"data": []}),
        optional(collections_of(request, key), []),
    )
    return page(
        request,
        "fine_tuning.html",
        nav="fine-tuning",
        jobs=(jobs or {}).get("data", []),
        files=(files or {}).get("data", []),
        collections=collections,
        errors=[e for e in (jobs_error, files_error) if e],
        notice=request.query_params.get("notice"),
    )


@router.post("/fine-tuning/files", summary="Upload a JSONL file of chat examples")
async def upload_training_file(request: Request, session: WriteSessionDep) -> Response:
    form = await request.form(max_files=1)
    upload = form.get("file")
    if upload is None or isinstance(upload, str) or not upload.filename:
        return page(request, "error.html", 422, message="Choose a JSONL file of chat examples.")
    encoded = httpx.Request(
        "POST",
        "http://gateway/v1/files",
        files={"file": (upload.filename, await upload.read(), "application/jsonl")},
        data={"purpose": "fine-tune"},
    )
    headers = {"Content-Type": encoded.headers["Content-Type"]}
    created = await gateway(request).json("POST", "v1/files", session.api_key, content=encoded.read(), headers=headers)
    return see_other(f"/fine-tuning?notice=Uploaded+{created['id']}")


@router.post("/fine-tuning/jobs", summary="Start a fine-tuning job or the fine-tune-and-promote workflow")
async def start_job(request: Request, session: WriteSessionDep) -> Response:
    form = await request.form()
    request_body = views.job_request(form)
    if form.get("kind") == "workflow":
        path = "v1/fine_tuning/workflows"
        started = await gateway(request).json("POST", path, session.api_key, json_body=request_body)
        instance = started["id"]
        return see_other(f"/fine-tuning/workflows/{instance}")
    job = await gateway(request).json("POST", "v1/fine_tuning/jobs", session.api_key, json_body=request_body)
    return see_other(f"/fine-tuning/jobs/{job['id']}")


@router.get("/fine-tuning/jobs/{job_id}", response_class=HTMLResponse, summary="One job: status, loss chart, events")
async def job_page(request: Request, job_id: str, session: SessionDep) -> HTMLResponse:
    key = session.api_key
    job = await gateway(request).json("GET", f"v1/fine_tuning/jobs/{job_id}", key)
    (events, _), (checkpoints, _) = await asyncio.gather(
        optional(gateway(request).json("GET", f"v1/fine_tuning/jobs/{job_id}/events", key, params={"limit": 50}), {}),
        optional(gateway(request).json("GET", f"v1/fine_tuning/jobs/{job_id}/checkpoints", key), {}),
    )
    return page(
        request,
        "job.html",
        nav="fine-tuning",
        job=job,
        events=(events or {}).get("data", []),
        checkpoints=(checkpoints or {}).get("data", []),
    )


@router.get("/fine-tuning/jobs/{job_id}/loss", summary="A job's loss curve as JSON (the chart polls it)")
async def job_loss(request: Request, job_id: str, session: SessionDep) -> JSONResponse:
    key = session.api_key
    job = await gateway(request).json("GET", f"v1/fine_tuning/jobs/{job_id}", key)
    events: list[dict[str, Any]] = []
    after = None
    # Pages of the API's largest size (2,000 events), newest first, up to a long job's worth.
    for _ in range(LOSS_PAGES):
        params = {"limit": 2000, "after": after}
        listed = await gateway(request).json("GET", f"v1/fine_tuning/jobs/{job_id}/events", key, params=params)
        events += listed.get("data", [])
        if not listed.get("has_more") or not events:
            break
        after = events[-1]["id"]
    return JSONResponse({"status": job["status"], "step": job.get("step"), **views.loss_series(events)})


@router.post("/fine-tuning/jobs/{job_id}/cancel", summary="Cancel a job")
async def cancel_job(request: Request, job_id: str, session: WriteSessionDep) -> RedirectResponse:
    await gateway(request).json("POST", f"v1/fine_tuning/jobs/{job_id}/cancel", session.api_key)
    return see_other(f"/fine-tuning/jobs/{job_id}")


@router.get("/fine-tuning/workflows/{instance_id}", response_class=HTMLResponse, summary="A workflow's step and gate")
async def workflow_page(request: Request, instance_id: str, session: SessionDep) -> HTMLResponse:
    workflow = await gateway(request).json("GET", f"v1/fine_tuning/workflows/{instance_id}", session.api_key)
    return page(request, "workflow.html", nav="fine-tuning", workflow=workflow, instance_id=instance_id)


# --- system -------------------------------------------------------------------------------------


async def system_view(request: Request, key: str) -> dict[str, Any]:
    api = gateway(request)
    (
        (health, health_error),
        (events, events_error),
        (dead, dead_error),
        (usage, usage_error),
        (overview, _),
    ) = await asyncio.gather(
        optional(api.json("GET", "v1/system/health", key)),
        optional(api.json("GET", "v1/events", key, params={"limit": 200}), []),
        optional(api.json("GET", "v1/dead-letters", key, params={"limit": 50}), []),
        optional(api.json("GET", "v1/usage", key)),
        # The monitoring service's overview, when the platform offers it; the page does without.
        optional(api.json("GET", "v1/system/overview", key)),
    )
    return {
        "health": health,
        "events_by_topic": views.events_by_topic(events or []),
        "dead_letters": dead or [],
        "usage": usage,
        "overview": overview,
        "errors": [e for e in (health_error, events_error, dead_error, usage_error) if e],
    }


@router.get("/system", response_class=HTMLResponse, summary="Every app and sidecar, events, dead letters, usage")
async def system_page(request: Request, session: SessionDep) -> HTMLResponse:
    return page(request, "system.html", nav="system", **await system_view(request, session.api_key))


@router.get("/system/apps", response_class=HTMLResponse, summary="The apps' readiness table (htmx refresh)")
async def system_apps(request: Request, session: SessionDep) -> HTMLResponse:
    return page(request, "_system_apps.html", **await system_view(request, session.api_key))
