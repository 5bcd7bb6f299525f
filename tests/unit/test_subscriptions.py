"""The subscription helper: /dapr/subscribe generated, payloads validated, Dapr's answers mapped."""

import logging
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from genai_platform.dapr import DaprError
from genai_platform.events import CloudEvent, Delivery, Topic
from genai_platform.idempotency import SeenEvents
from genai_platform.subscriptions import Subscriptions


class Promoted(BaseModel):
    model: str
    version: int


class Refused(Exception):
    pass


class Harness:
    """One app with three declared subscriptions and a script of what the handler does next."""

    def __init__(self) -> None:
        self.subscriptions = Subscriptions()
        self.handled: list[tuple[str, object]] = []
        self.invalid: list[str] = []
        self.next: list[object] = []  # a Delivery to return or an exception to raise, per call

        def behave(event: CloudEvent, payload: object) -> Delivery | None:
            self.handled.append((event.id, payload))
            outcome = self.next.pop(0) if self.next else None
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        @self.subscriptions.subscribe(
            Topic.MODEL_PROMOTED,
            route="/events/model-promoted",
            payload=Promoted,
            dead_letter_topic=Topic.DEAD_LETTER,
            drop_on=(Refused,),
            on_invalid=lambda request, event: self.invalid.append(event.id),
        )
        async def on_promoted(request, event, payload):
            return behave(event, payload)

        @self.subscriptions.subscribe(Topic.PROMPT_UPDATED, route="/events/prompt-updated", seen=None)
        def on_prompt(request, event, data):  # sync handlers work too
            return behave(event, data)

        @self.subscriptions.subscribe(
            Topic.DOCUMENTS_SUBMIT, route="/events/documents-submit", metadata={"rawPayload": "false"}
        )
        async def on_submit(request, event, data):
            return behave(event, data)

        app = FastAPI()
        app.state.settings = SimpleNamespace(pubsub_name="pubsub")
        app.state.seen_events = SeenEvents(capacity=16)
        app.include_router(self.subscriptions.router)
        self.client = TestClient(app)

    def deliver(self, route: str, event_id: str, data: object) -> tuple[int, str]:
        response = self.client.post(route, json={"id": event_id, "topic": "t", "data": data})
        return response.status_code, response.json()["status"]


GOOD = {"model": "smollm2", "version": 2}


def test_dapr_subscribe_lists_every_declared_subscription() -> None:
    harness = Harness()
    response = harness.client.get("/dapr/subscribe")
    assert response.status_code == 200
    assert response.json() == [
        {
            "pubsubname": "pubsub",
            "topic": "model.promoted",
            "route": "/events/model-promoted",
            "deadLetterTopic": "deadletter",
        },
        {"pubsubname": "pubsub", "topic": "prompt.updated", "route": "/events/prompt-updated"},
        {
            "pubsubname": "pubsub",
            "topic": "documents.submit",
            "route": "/events/documents-submit",
            "metadata": {"rawPayload": "false"},
        },
    ]
    assert harness.subscriptions.topics == {"model.promoted", "prompt.updated", "documents.submit"}


def test_a_valid_payload_reaches_the_handler_as_its_model() -> None:
    harness = Harness()
    assert harness.deliver("/events/model-promoted", "e1", {**GOOD, "version": "2", "extra": 1}) == (200, "SUCCESS")
    assert harness.handled == [("e1", Promoted(model="smollm2", version=2))]


def test_an_invalid_payload_is_dropped_logged_and_never_handled(caplog) -> None:
    harness = Harness()
    with caplog.at_level(logging.WARNING, logger="genai_platform.subscriptions"):
        assert harness.deliver("/events/model-promoted", "bad", {"model": "m"}) == (200, "DROP")
        assert harness.deliver("/events/model-promoted", "worse", "not an object") == (200, "DROP")
    assert harness.handled == []
    assert harness.invalid == ["bad", "worse"]
    assert [r.message for r in caplog.records] == ["model.promoted: invalid payload dropped"] * 2
    assert caplog.records[0].event_id == "bad"


@pytest.mark.parametrize(
    ("outcome", "answer"),
    [
        (DaprError(500, "ERR_STATE_GET", "redis is down"), "RETRY"),
        (RuntimeError("a bug"), "RETRY"),
        (Refused("never"), "DROP"),
        (Delivery.DROP, "DROP"),
        (Delivery.RETRY, "RETRY"),
        (None, "SUCCESS"),
    ],
)
def test_outcomes_map_to_dapr_answers_never_to_an_error_status(outcome, answer) -> None:
    harness = Harness()
    harness.next = [outcome]
    assert harness.deliver("/events/model-promoted", "e1", GOOD) == (200, answer)


def test_a_duplicate_id_is_handled_once_and_only_after_success() -> None:
    harness = Harness()
    harness.next = [DaprError(503, "ERR_PUBSUB", "down")]
    assert harness.deliver("/events/model-promoted", "e1", GOOD)[1] == "RETRY"
    assert harness.deliver("/events/model-promoted", "e1", GOOD)[1] == "SUCCESS"  # the redelivery is handled
    assert harness.deliver("/events/model-promoted", "e1", GOOD)[1] == "SUCCESS"  # and then not again
    assert [event_id for event_id, _ in harness.handled] == ["e1", "e1"]
    assert "e1" in harness.client.app.state.seen_events


def test_without_seen_ids_every_delivery_is_handled() -> None:
    harness = Harness()
    harness.deliver("/events/prompt-updated", "e1", {"name": "a"})
    harness.deliver("/events/prompt-updated", "e1", {"name": "a"})
    assert harness.handled == [("e1", {"name": "a"}), ("e1", {"name": "a"})]


def test_a_failing_seen_ids_store_means_retry() -> None:
    harness = Harness()

    class Down(SeenEvents):
        async def handled(self, event_id: str) -> bool:
            raise DaprError(500, "ERR_STATE_GET", "redis is down")

    harness.client.app.state.seen_events = Down()
    assert harness.deliver("/events/documents-submit", "e1", {"text": "x"}) == (200, "RETRY")
    assert harness.handled == []


def test_a_route_is_declared_once() -> None:
    subscriptions = Subscriptions()
    subscriptions.subscribe(Topic.CHUNKS_INDEXED, route="/events/x")(lambda request, event, data: None)
    with pytest.raises(ValueError, match="already subscribed"):
        subscriptions.subscribe(Topic.MODEL_PROMOTED, route="/events/x")


def test_a_service_serves_its_subscriptions_to_its_own_sidecar_only() -> None:
    from genai_platform.service import create_service  # noqa: PLC0415
    from genai_platform.settings import ServiceSettings  # noqa: PLC0415

    token = "app-token-for-tests-0123456789"
    settings = ServiceSettings.model_validate(
        {"APP_ID": "demo", "APP_PORT": "1", "DAPR_HTTP_PORT": "9", "APP_API_TOKEN": token}
    )
    harness = Harness()
    with TestClient(create_service(settings, title="demo", routers=[harness.subscriptions.router])) as client:
        client.app.state.seen_events = SeenEvents()
        event = {"id": "e1", "data": GOOD}
        assert client.get("/dapr/subscribe").status_code == 401
        assert client.post("/events/model-promoted", json=event).status_code == 401
        assert harness.handled == []
        listed = client.get("/dapr/subscribe", headers={"dapr-api-token": token})
        assert [s["pubsubname"] for s in listed.json()] == [settings.pubsub_name] * 3
        answer = client.post("/events/model-promoted", json=event, headers={"dapr-api-token": token})
        assert answer.json() == {"status": "SUCCESS"} and len(harness.handled) == 1
