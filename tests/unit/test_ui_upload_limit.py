"""The ui's upload limit is the platform's one figure for a document (genai_platform.contracts.documents),
as ingestion's and the gateway's are: it was 4,000,000 bytes while the gateway took 10 MiB + 64 KiB.
A file past it is refused by name, with the limit, and never sent on."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.settings import GatewaySettings
from genai_platform.contracts.documents import MAX_DOCUMENT_BYTES, MAX_UPLOAD_BODY_BYTES, MULTIPART_FRAMING_BYTES
from ingestion.settings import IngestionSettings
from ui.pages import checked_session, current_session, router
from ui.sessions import Session
from ui.settings import UiSettings


def test_the_ui_ingestion_and_the_gateway_take_their_limits_from_one_contract() -> None:
    ui = UiSettings.model_fields["max_upload_bytes"].default
    ingestion = IngestionSettings.model_fields["max_document_bytes"].default
    gateway = GatewaySettings.model_fields["max_upload_body_bytes"].default
    assert ui == ingestion == MAX_DOCUMENT_BYTES == 10 << 20
    assert gateway == MAX_UPLOAD_BODY_BYTES == ui + MULTIPART_FRAMING_BYTES == (10 << 20) + (64 << 10)


class RecordingGateway:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def json(self, method: str, path: str, api_key: str, **kwargs: Any) -> Any:
        self.calls.append((method, path))
        return {"id": f"doc-{len(self.calls)}"} if method == "POST" else {"documents": []}


def console(limit: int) -> tuple[TestClient, RecordingGateway]:
    app = FastAPI()
    app.include_router(router)
    app.state.settings = SimpleNamespace(max_upload_bytes=limit)
    app.state.gateway = RecordingGateway()
    session = Session(id="s", api_key="k", csrf_token="t", created=0.0)
    app.dependency_overrides[current_session] = lambda: session
    app.dependency_overrides[checked_session] = lambda: session
    return TestClient(app), app.state.gateway


def test_the_documents_page_states_the_limit_for_its_script() -> None:
    client, _ = console(MAX_DOCUMENT_BYTES)
    page = client.get("/documents").text
    assert f'data-max-bytes="{MAX_DOCUMENT_BYTES}"' in page
    assert "up to 10,485,760 bytes (10.0 MiB) each" in page


def test_a_file_past_the_limit_is_refused_by_name_and_not_sent() -> None:
    limit = 1 << 20
    client, gateway = console(limit)
    files = [
        ("files", ("fits.txt", b"a" * limit, "text/plain")),
        ("files", ("big.txt", b"a" * (limit + 1), "text/plain")),
    ]
    answer = client.post("/documents/upload", data={"collection": "c", "csrf_token": "t"}, files=files)
    assert answer.status_code == 422
    assert "big.txt: 1,048,577 bytes is over the limit of 1,048,576 bytes (1.0 MiB) for one document" in answer.text
    assert "fits.txt" not in answer.text
    assert gateway.calls == [("POST", "v1/documents")]  # only the file that fits went on
