"""The ui's fields take the platform's own figures and rules, never copies of them.

One limit on an answer's tokens (genai_platform.contracts.openai.MAX_COMPLETION_TOKENS) for the ui,
the gateway and inference. A new-user trial: the ui's "Longest answer" field took 4096 while the
gateway and inference refused more than 2048; the ui answered 202, then "The answer failed."
The gateway's own refusal is in test_gateway_rails.py. The name fields' `pattern` hints are the
rules ingestion and prompts check, written so a browser can use them (the old ones could not)."""

from __future__ import annotations

import inspect
import re
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.settings import GatewaySettings
from genai_platform.contracts.documents import COLLECTION_PATTERN, MAX_DOCUMENT_BYTES
from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS
from genai_platform.contracts.prompts import PROMPT_LABEL_PATTERN, PROMPT_NAME_PATTERN
from genai_platform.events import DocumentMeta
from inference.engine import Engine
from inference.settings import InferenceSettings
from prompts.templates import LABEL_PATTERN, NAME_PATTERN
from ui import views
from ui.pages import checked_session, current_session, router
from ui.sessions import Session
from ui.settings import UiSettings


def test_the_ui_the_gateway_and_inference_take_one_limit() -> None:
    ui = UiSettings.model_fields["max_tokens"].default
    gateway = GatewaySettings.model_fields["max_tokens"].default
    inference = InferenceSettings.model_fields["max_tokens_limit"].default
    assert ui == gateway == inference == MAX_COMPLETION_TOKENS == 2048
    assert inspect.signature(Engine).parameters["max_tokens_limit"].default == MAX_COMPLETION_TOKENS


@pytest.mark.parametrize(("raw", "taken"), [("", None), ("  ", None), ("1", 1), ("256", 256), ("2048", 2048)])
def test_a_longest_answer_in_range_is_sent_as_max_tokens(raw: str, taken: int | None) -> None:
    assert views.answer_length(raw, 2048) == taken


@pytest.mark.parametrize("raw", ["4096", "2049", "0", "-1", "1.5", "1e3", "many", "\uff12\uff15\uff16"])
def test_a_longest_answer_out_of_range_is_refused_naming_the_field_and_range(raw: str) -> None:
    with pytest.raises(views.FormError) as refused:
        views.answer_length(raw, 2048)
    assert str(refused.value).startswith("Longest answer must be a whole number of tokens from 1 to 2,048")


class Runner:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    async def get(self, answer_id: str, session_id: str) -> None:
        return None

    def start(self, session_id: str, api_key: str, body: dict[str, Any], *rest: Any) -> Any:
        self.started.append(body)
        return SimpleNamespace(id=f"a{len(self.started)}")


class Sessions:
    async def save(self, session: Session) -> None:
        return None


class Gateway:
    async def json(self, method: str, path: str, api_key: str, **kwargs: Any) -> Any:
        return {"data": [{"id": "smollm2"}], "documents": []}


@pytest.fixture
def console() -> tuple[TestClient, Runner]:
    app = FastAPI()
    app.include_router(router)
    app.state.settings = SimpleNamespace(max_tokens=MAX_COMPLETION_TOKENS, max_upload_bytes=MAX_DOCUMENT_BYTES)
    app.state.answers, app.state.sessions, app.state.gateway = Runner(), Sessions(), Gateway()
    session = Session(id="s", api_key="k", csrf_token="t", created=0.0)
    app.dependency_overrides[current_session] = lambda: session
    app.dependency_overrides[checked_session] = lambda: session
    return TestClient(app), app.state.answers


def test_the_chat_page_refuses_4096_when_asked_and_starts_no_answer(console) -> None:
    client, runner = console
    refused = client.post("/chat/answers", data={"question": "Hi", "max_tokens": "4096", "csrf_token": "t"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "max_tokens"
    assert "from 1 to 2,048" in refused.json()["message"] and "4096" in refused.json()["message"]
    assert runner.started == []
    taken = client.post("/chat/answers", data={"question": "Hi", "max_tokens": "2048", "csrf_token": "t"})
    assert taken.status_code == 202 and runner.started[0]["max_tokens"] == 2048


def test_the_chat_page_states_the_limit_on_the_field(console) -> None:
    client, _ = console
    page = client.get("/chat").text
    assert 'id="max_tokens" name="max_tokens" type="number" min="1" max="2048"' in page
    assert "1 to 2,048" in page


def test_the_name_fields_hint_the_rules_the_platform_checks(console) -> None:
    client, _ = console
    assert f'pattern="{COLLECTION_PATTERN}"' in client.get("/documents").text
    assert (f"^{PROMPT_NAME_PATTERN}$", f"^{PROMPT_LABEL_PATTERN}$") == (NAME_PATTERN, LABEL_PATTERN)
    assert DocumentMeta.model_fields["collection"].metadata[-1].pattern == f"^{COLLECTION_PATTERN}$"


@pytest.mark.parametrize("pattern", [COLLECTION_PATTERN, PROMPT_NAME_PATTERN, PROMPT_LABEL_PATTERN])
def test_a_pattern_is_one_a_browser_can_use(pattern: str) -> None:
    # Browsers compile `pattern` with the `v` flag, where an unescaped `-` in a class is a syntax
    # error and the pattern is ignored: `[A-Za-z0-9._-]+` hinted nothing.
    for body in re.findall(r"\[([^\]]*)\]", pattern):
        assert re.search(r"(^|[^\\])-($|[^A-Za-z0-9])", body) is None, body
    assert re.fullmatch(pattern, "ops-notes.v2_a") and not re.fullmatch(pattern, "ops notes")
