"""Ingestion's 422s in the platform's one error shape: problem+json whose `errors` name each field
as every other app names it (`body.<field>`). A new-user trial found fields named without `body.`
and an empty `text` that named no field at all. The routes run in process over the fake sidecar."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_ingestion_collections import ingestor

from fakes import FakeDapr
from genai_platform.errors import install_error_handlers
from ingestion.routes import documents


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(documents)
    app.state.settings = SimpleNamespace(max_document_bytes=1 << 20, allowed_dir=tmp_path, url_timeout_s=1.0)
    app.state.ingestor = ingestor(FakeDapr())
    return TestClient(app)


def _locations(answer: Any) -> list[str]:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return [error["location"] for error in answer.json()["errors"]]


@pytest.mark.parametrize(
    ("body", "locations"),
    [
        ({"text": ""}, ["body.text"]),  # the trial's input: it named no field
        ({"text": " \n\t "}, ["body.text"]),  # cleans to nothing
        ({"text": 5}, ["body.text"]),
        ({"text": "Tides.", "collection": "no spaces"}, ["body.collection"]),  # the trial's: `collection`
        ({"text": "Tides.", "tags": "one"}, ["body.tags"]),
        ({"text": "Tides.", "url": "https://example.com/"}, ["body"]),  # two sources: the body as a whole
        ({"path": "../../etc/passwd"}, ["body.path"]),
        ({"url": "http://127.0.0.1:1/"}, ["body.url"]),
    ],
)
def test_a_json_document_that_cannot_be_taken_names_its_field(client: TestClient, body, locations) -> None:
    assert _locations(client.post("/v1/documents", json=body)) == locations


def test_a_refused_url_keeps_its_title_beside_the_field(client: TestClient) -> None:
    refused = client.post("/v1/documents", json={"url": "http://127.0.0.1:1/"})
    assert refused.json()["title"] == "URL refused" and refused.json()["detail"].startswith("URL refused: ")


def test_an_upload_that_cannot_be_taken_names_its_field(client: TestClient) -> None:
    no_file = client.post("/v1/documents", files={"title": (None, "t")})
    assert _locations(no_file) == ["body.file"]
    bad_collection = client.post(
        "/v1/documents", files={"file": ("a.txt", b"Tides.", "text/plain"), "collection": (None, "no spaces")}
    )
    assert _locations(bad_collection) == ["body.collection"]
    empty = client.post("/v1/documents", files={"file": ("a.txt", b"   ", "text/plain")})
    assert _locations(empty) == ["body.file"]


def test_a_document_that_can_be_taken_is_stored(client: TestClient) -> None:
    assert client.post("/v1/documents", json={"text": "Tides follow the Moon."}).status_code == 201
