"""HTTP routes of the ingestion service: documents API, the `documents.submit` topic, the inbox sweep."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from genai_platform.dapr import DaprError
from genai_platform.errors import Problem, invalid_request, problem_responses, validation_errors
from genai_platform.events import CloudEvent, DocumentSubmit, Topic
from genai_platform.paths import ResourceId
from genai_platform.subscriptions import Subscriptions
from ingestion.documents import DocumentMeta, DocumentStore
from ingestion.extract import ContentMismatch, DocumentTooLarge, ExtractOptions, UnreadableDocument, UnsupportedFormat
from ingestion.inbox import InboxSweeper
from ingestion.pipeline import DocumentInOtherCollection, Ingested, Ingestor, OutsideAllowedFolder
from ingestion.schemas import DocumentCreated, DocumentDetail, DocumentPage, upload_request_body
from ingestion.settings import IngestionSettings
from ingestion.urlfetch import FetchFailed, RefusedUrl, fetch

log = logging.getLogger(__name__)

documents = APIRouter(prefix="/v1/documents", tags=["documents"])
dapr_routes = APIRouter(tags=["dapr"], include_in_schema=False)
subscriptions = Subscriptions()


class DocumentSubmission(DocumentSubmit):
    """A document given as text, as a URL to fetch, or as a path inside the allowed folder.

    The JSON body of `POST /v1/documents` and the payload of `documents.submit` (its fields and
    checks are `genai_platform.events.DocumentSubmit`'s).
    """

    def meta(self) -> DocumentMeta:
        return DocumentMeta.model_validate(self.model_dump(include=set(DocumentMeta.model_fields)))

    def options(self) -> ExtractOptions:
        return ExtractOptions(text_field=self.text_field, columns=tuple(self.columns))

    @property
    def source_field(self) -> str:
        """The field that holds the document or says where it is: `text`, `url` or `path`."""
        return "text" if self.text is not None else "url" if self.url is not None else "path"


def _field_problem(location: str | None, title: str, message: str) -> Problem:
    """A 422 for a document that was given but cannot be taken, in the platform's one 422 shape
    (`errors` naming the field, as `genai_platform.errors.invalid_request`) under its own title."""
    errors = [{"location": location, "message": message}] if location else []
    return Problem(422, message, title=title, errors=errors)


@contextmanager
def problems(location: str | None = None) -> Iterator[None]:
    """Domain errors as the client should see them; never a 500 for bad input. A 422 about the
    document names `location`, the field that carried it (`body.text`, `body.url`, `body.path`,
    `body.file`), as a validation error would."""
    try:
        yield
    except DocumentTooLarge as error:
        raise Problem(413, str(error)) from error
    except ContentMismatch as error:
        raise Problem(
            415,
            str(error),
            title="Content does not match its declared type",
            declared_type=error.declared_type,
            detected_type=error.detected_type,
        ) from error
    except UnsupportedFormat as error:
        raise Problem(415, str(error)) from error
    except RefusedUrl as error:
        raise _field_problem(location, "URL refused", f"URL refused: {error}") from error
    except (UnreadableDocument, FetchFailed, OutsideAllowedFolder) as error:
        raise _field_problem(location, "Unprocessable document", str(error)) from error
    except DaprError as error:
        log.warning("sidecar call failed: %s", error)
        raise Problem(503, "The document store is unavailable; try again.", headers={"Retry-After": "2"}) from error


def _ingestor(request: Request) -> Ingestor:
    return request.app.state.ingestor


def _settings(request: Request) -> IngestionSettings:
    return request.app.state.settings


async def submit(request: Request, submission: DocumentSubmission) -> Ingested:
    """One submission from any trigger, through the same pipeline."""
    settings, ingestor = _settings(request), _ingestor(request)
    meta, options = submission.meta(), submission.options()
    if submission.text is not None:
        if len(submission.text.encode()) > settings.max_document_bytes:
            raise DocumentTooLarge(f"the document is larger than {settings.max_document_bytes} bytes")
        if submission.format in (None, "text", "markdown"):
            return await ingestor.ingest_text(submission.text, meta)
        return await ingestor.ingest_bytes(
            submission.text.encode(), meta, declared_format=submission.format, options=options
        )
    if submission.url is not None:
        data, media_type, final_url = await fetch(
            submission.url, max_bytes=settings.max_document_bytes, timeout=settings.url_timeout_s
        )
        meta = meta.model_copy(update={"source": meta.source or final_url})
        name = final_url.rsplit("/", 1)[-1] or None
        return await ingestor.ingest_bytes(
            data, meta, declared_format=submission.format, filename=name, media_type=media_type, options=options
        )
    assert submission.path is not None
    return await ingestor.ingest_path(
        submission.path,
        settings.allowed_dir,
        meta,
        settings.max_document_bytes,
        declared_format=submission.format,
        options=options,
    )


def _answer(result: Ingested) -> JSONResponse:
    body = DocumentCreated(id=result.document.id, created=result.created, document=result.document.summary())
    return JSONResponse(body.model_dump(mode="json"), status_code=201 if result.created else 200)


def _split_list(values: list[str]) -> list[str]:
    # Form fields come repeated (tags=a&tags=b) or comma-separated (tags=a,b); take both.
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


@documents.post(
    "",
    summary="Add a document: JSON (text, url or path) or a multipart upload (field `file`)",
    status_code=201,
    response_model=DocumentCreated,
    responses={
        200: {"model": DocumentCreated, "description": "The same content was already stored: its id"},
        **problem_responses(409, 413, 415, 422, 503),
    },
    openapi_extra={"requestBody": upload_request_body(DocumentSubmission)},
)
async def create_document(request: Request) -> JSONResponse:
    settings = _settings(request)
    # A body over the largest document and its framing never gets here: the body rule refuses it
    # by its declared length before it is read (ingestion.app: create_service's max_body_bytes).
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        with problems("body.file"):
            return _answer(await _upload(request, settings))
    if media_type in ("application/json", ""):
        try:
            submission = DocumentSubmission.model_validate_json(await request.body())
        except ValidationError as error:
            # Located as FastAPI locates a body's fields on every other app: `body.<field>`.
            raise invalid_request(validation_errors(error.errors(include_url=False), ("body",))) from error
        with problems(f"body.{submission.source_field}"):
            return _answer(await submit(request, submission))
    raise Problem(415, "send application/json or multipart/form-data")


async def _upload(request: Request, settings: IngestionSettings) -> Ingested:
    form = await request.form(max_files=1, max_fields=50)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            message = "the multipart body needs a file in the field `file`"
            raise invalid_request([{"location": "body.file", "message": message}], message)
        data = await upload.read(settings.max_document_bytes + 1)
        if len(data) > settings.max_document_bytes:
            raise DocumentTooLarge(f"the document is larger than {settings.max_document_bytes} bytes")
        try:
            meta = DocumentMeta(
                title=form.get("title") or None,
                source=form.get("source") or None,
                tags=_split_list([str(v) for v in form.getlist("tags")]),
                collection=str(form.get("collection") or "default"),
            )
        except ValidationError as error:
            errors = validation_errors(error.errors(include_url=False), ("body",))
            raise invalid_request(errors, "The metadata is not valid.") from error
        options = ExtractOptions(
            text_field=str(form.get("text_field") or "text"), columns=tuple(_split_list(form.getlist("columns")))
        )
        return await _ingestor(request).ingest_bytes(
            data,
            meta,
            declared_format=str(form.get("format") or "") or None,
            filename=upload.filename,
            media_type=upload.content_type,
            options=options,
        )
    finally:
        await form.close()


# The answers below are documented, not re-validated: stored catalog entries go out as they are.
@documents.get(
    "",
    summary="List documents, oldest first, optionally in one collection",
    response_model=None,
    responses={200: {"model": DocumentPage}, **problem_responses(503)},
)
async def list_documents(
    request: Request,
    collection: str | None = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    store: DocumentStore = request.app.state.store
    with problems():
        page, total = await store.list(collection=collection, offset=offset, limit=limit)
    return {"documents": page, "total": total, "offset": offset, "limit": limit}


@documents.get(
    "/{document_id}",
    summary="One document; `chunks=true` adds its chunks",
    response_model=None,
    responses={200: {"model": DocumentDetail}, **problem_responses(404, 422, 503)},
)
async def get_document(request: Request, document_id: ResourceId, chunks: bool = False) -> dict[str, Any]:
    store: DocumentStore = request.app.state.store
    with problems():
        document = await store.get(document_id)
        if document is None:
            raise Problem(404, f"no document {document_id}")
        body = document.summary()
        if chunks:
            body["chunks"] = [chunk.model_dump(mode="json") for chunk in await store.chunks(document)]
    return body


@documents.delete(
    "/{document_id}",
    status_code=204,
    summary="Delete a document; its chunks leave the index",
    responses=problem_responses(404, 422, 503),
)
async def delete_document(request: Request, document_id: ResourceId) -> Response:
    store: DocumentStore = request.app.state.store
    with problems():
        document = await store.get(document_id)
        if document is None:
            raise Problem(404, f"no document {document_id}")
        await _ingestor(request).delete(document)
    return Response(status_code=204)


# --- Dapr: the documents.submit topic and the inbox sweep binding --------------------------------

SUBMIT_ROUTE = "/events/documents-submit"
INBOX_BINDING = "inbox-sweep"


# No seen ids: a document's id is its content hash, so a redelivered submission finds it stored.
@subscriptions.subscribe(
    Topic.DOCUMENTS_SUBMIT,
    route=SUBMIT_ROUTE,
    payload=DocumentSubmission,
    dead_letter_topic=Topic.DEAD_LETTER,
    seen=None,
    # Bad input will never succeed: dropped. A store that is down (DaprError) is retried.
    drop_on=(
        DocumentTooLarge,
        UnsupportedFormat,
        UnreadableDocument,
        RefusedUrl,
        FetchFailed,
        OutsideAllowedFolder,
        DocumentInOtherCollection,
    ),
)
async def on_submit(request: Request, event: CloudEvent, submission: DocumentSubmission) -> None:
    """A submission by event: same payload as the JSON POST."""
    result = await submit(request, submission)
    log.info("documents.submit: ingested", extra={"event_id": event.id, "document_id": result.document.id})


@dapr_routes.options(f"/{INBOX_BINDING}")
async def inbox_binding_probe() -> Response:
    # daprd asks with OPTIONS whether the app takes the binding's events.
    return Response(status_code=200)


@dapr_routes.post(f"/{INBOX_BINDING}")
async def on_inbox_sweep(request: Request) -> dict[str, Any]:
    """The cron binding fired: sweep the inbox in the background and answer at once, so a long
    sweep never makes the binding time out. Sweeps never overlap."""
    sweeper: InboxSweeper = request.app.state.inbox
    return {"started": sweeper.start_sweep()}
