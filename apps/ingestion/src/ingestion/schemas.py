"""The shapes of the documents API's answers and upload body, declared for the OpenAPI document.

`DocumentSummary` is built from `Document` (every field but its internal `state`), so the
documented shape follows the stored one. The upload body is documented as FastAPI cannot
declare it: one route takes JSON or a multipart form, read by hand (see `routes.create_document`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, create_model

from ingestion.documents import Document, StoredChunk

DocumentSummary = create_model(
    "DocumentSummary",
    __doc__="A stored document: its id (from the content hash), metadata, sizes and revision.",
    **{name: (field.annotation, field) for name, field in Document.model_fields.items() if name != "state"},
)


class DocumentCreated(BaseModel):
    """The answer to an upload: `created` is False (and the status 200) when the content was stored already."""

    id: str
    created: bool
    document: DocumentSummary


class DocumentPage(BaseModel):
    """One page of the document list, oldest first; `total` counts every match."""

    documents: list[DocumentSummary]
    total: int
    offset: int
    limit: int


class DocumentDetail(DocumentSummary):
    """One document; with `chunks=true`, its chunks in order."""

    chunks: list[StoredChunk] | None = Field(None, description="Only with `chunks=true`.")


def upload_request_body(submission: type[BaseModel]) -> dict[str, Any]:
    """The `requestBody` of `POST /v1/documents`: `submission` as JSON, or a multipart form.

    The form carries the file in `file` and the submission's fields but its sources (`text`,
    `url`, `path`); `tags` and `columns` may repeat or be comma-separated.
    """
    json_schema = submission.model_json_schema()
    assert "$defs" not in json_schema  # inlined below: nothing may point into components
    fields = {name: schema for name, schema in json_schema["properties"].items() if name not in ("text", "url", "path")}
    form = {
        "type": "object",
        "title": "DocumentUpload",
        "properties": {"file": {"type": "string", "format": "binary", "description": "The document."}, **fields},
        "required": ["file"],
    }
    return {
        "required": True,
        "content": {"application/json": {"schema": json_schema}, "multipart/form-data": {"schema": form}},
    }
