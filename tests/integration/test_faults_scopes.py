"""Component and topic scopes, enforced by each app's own sidecar with the real components.

A test double (the flaky app) stands in for the app process, so only the app-id, and with it
the sidecar's scopes, matters: guard may publish guard.violation but no other platform topic,
and has no state store; ui has no pub/sub at all but does have the state store.
"""

import uuid

import httpx

from genai_platform.events import GuardViolation, Topic


def violation() -> dict:
    # A valid payload: a monitor started later reads it from the broker like any other.
    return GuardViolation(direction="input", allowed=True, rails=[], text_chars=0).model_dump(mode="json")


def test_a_topic_outside_the_apps_publishing_scopes_is_refused(start_app, default_broker) -> None:
    guard = start_app("guard", module="flaky_app")
    with guard.sidecar.client() as dapr:
        refused = dapr.post(f"/v1.0/publish/pubsub/{Topic.MODEL_PROMOTED}", json={"model": "smollm2", "version": 99})
        assert refused.status_code == 403, refused.text
        assert refused.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN"
        # Its own topic still goes through.
        allowed = dapr.post(f"/v1.0/publish/pubsub/{Topic.GUARD_VIOLATION}", json=violation())
        assert allowed.status_code == 204, allowed.text


def test_a_state_store_outside_the_apps_component_scopes_is_refused(start_app, default_broker) -> None:
    guard = start_app("guard", module="flaky_app")
    ui = start_app("ui", module="flaky_app")
    key = f"scopes-{uuid.uuid4().hex}"
    with guard.sidecar.client() as dapr:
        assert_no_component(dapr.get(f"/v1.0/state/statestore/{key}"), "ERR_STATE_STORE")
        assert_no_component(dapr.post("/v1.0/state/statestore", json=[{"key": key, "value": 1}]), "ERR_STATE_STORE")
    with ui.sidecar.client() as dapr:
        # ui keeps its sessions in the store, but may not touch the broker.
        saved = dapr.post("/v1.0/state/statestore", json=[{"key": key, "value": 1}])
        assert saved.status_code == 204, saved.text
        assert dapr.get(f"/v1.0/state/statestore/{key}").json() == 1
        assert dapr.delete(f"/v1.0/state/statestore/{key}").status_code == 204
        assert_no_component(dapr.post(f"/v1.0/publish/pubsub/{Topic.DOCUMENTS_SUBMIT}", json={}), "ERR_PUBSUB")


def assert_no_component(response: httpx.Response, kind: str) -> None:
    # daprd never loaded the component for this app-id: it has no such store or broker to use.
    # Dapr 1.18 answers "not configured" (no component of that kind at all) with a 500.
    assert response.status_code in (400, 404, 500), response.text
    assert response.json()["errorCode"] in (f"{kind}_NOT_FOUND", f"{kind}_NOT_CONFIGURED"), response.text
