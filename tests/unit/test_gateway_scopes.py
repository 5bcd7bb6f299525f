"""API key scopes: the secret's format, the route table, and a 403 naming the scope on every route.

The gateway runs in-process over the fake sidecar (tests/fakes.py): the secret store holds the
keys, and every relayed call answers 200, so a key holding a route's scopes reaches the app and
one lacking any of them is refused before it. The same relay carries an app's problem+json back
with `instance` the path the caller used (gateway.proxy.for_caller).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from fakes import FakeDapr
from gateway.api_keys import ApiKeys, key_digest, parse_keys, require_api_key, require_api_key_uncounted
from gateway.app import create_app
from gateway.limits import Limits
from gateway.routes import PUBLIC_ROUTES, public_router
from gateway.scopes import ALL, ANY_KEY, ROUTE_SCOPES, SCOPES, missing_scopes, route_scopes
from gateway.settings import GatewaySettings
from gateway.usage import UsageLedger

SECRET = "gateway-api-keys"


def test_a_bare_key_holds_every_scope_and_listed_scopes_are_all_it_holds() -> None:
    keys = parse_keys(" dev-key , reader=documents:read models:read,, promoter=models:promote")
    assert [(k.key, set(k.scopes)) for k in keys] == [
        ("dev-key", {ALL}),
        ("reader", {"documents:read", "models:read"}),
        ("promoter", {"models:promote"}),
    ]


def test_an_unknown_scope_grants_nothing() -> None:
    (key,) = parse_keys("k=chat documents:writ")
    assert key.scopes == frozenset({"chat"})
    (empty,) = parse_keys("k=")
    assert empty.scopes == frozenset()


def test_a_project_is_read_among_the_scopes_and_a_bad_one_skips_the_entry(caplog: pytest.LogCaptureFixture) -> None:
    keys = parse_keys("a=chat project=acme,b=* project=acme,c=chat project=x/y,d=chat project=,e=chat team=x,f=chat")
    assert [(k.key, set(k.scopes), k.project) for k in keys] == [
        ("a", {"chat"}, "acme"),
        ("b", {ALL}, "acme"),
        ("f", {"chat"}, None),
    ]
    # Keys of a project share its usage; a key without one is counted under its digest.
    assert keys[0].account == keys[1].account == "acme" and keys[2].account == key_digest("f") != "f"
    # Entries 3-5 are skipped (a "/", an empty name, another attribute), named by position only.
    skipped = [r.getMessage() for r in caplog.records if "is skipped" in r.getMessage()]
    assert [m.split(" is skipped")[0] for m in skipped] == ["API key entry 3", "API key entry 4", "API key entry 5"]
    assert not any(secret in m for m in skipped for secret in ("c=", "d=", "e="))


def test_missing_scopes_keep_the_routes_order() -> None:
    assert missing_scopes(frozenset({"models:promote"}), ("fine-tune", "models:promote")) == ["fine-tune"]
    assert missing_scopes(frozenset({ALL}), ("fine-tune", "models:promote")) == []
    assert missing_scopes(frozenset(), ANY_KEY) == []


def test_an_undeclared_route_is_refused_by_name() -> None:
    with pytest.raises(LookupError, match="GET /v1/nowhere declares no scope"):
        route_scopes("GET", "/v1/nowhere")


SETTINGS = GatewaySettings.model_validate({"APP_ID": "gateway", "APP_PORT": "1"})


def _app() -> Any:
    return create_app(SETTINGS)


def _scopes_of(route: APIRoute) -> list[str] | None:
    """The scopes the route's `require_api_key` dependency asks for, or None without one."""
    for dependency in route.dependant.dependencies:
        if dependency.call in (require_api_key, require_api_key_uncounted):
            return list(dependency.own_oauth_scopes or [])
    return None


def test_every_route_of_the_public_router_checks_its_declared_scopes() -> None:
    """Fails when a route is served without `requires_key`, or with other scopes than ROUTE_SCOPES."""
    served = {}
    for route in public_router().routes:
        assert isinstance(route, APIRoute)
        scopes = _scopes_of(route)
        for method in route.methods:
            assert scopes is not None, f"{method} {route.path} checks no API key scope"
            served[(method, route.path)] = tuple(scopes)
    assert served == ROUTE_SCOPES  # no route left out, no stale entry
    assert set().union(*ROUTE_SCOPES.values()) == set(SCOPES)  # every scope is needed somewhere


def test_every_public_operation_of_the_app_shows_its_scopes_in_openapi() -> None:
    """The whole app's document, routes added outside the public router included."""
    paths = _app().openapi()["paths"]
    operations = {
        (method.upper(), path): operation
        for path, item in paths.items()
        if path.startswith("/v1/")
        for method, operation in item.items()
    }
    assert set(operations) == set(ROUTE_SCOPES)
    for (method, path), operation in operations.items():
        assert operation["security"] == [{"HTTPBearer": list(ROUTE_SCOPES[(method, path)])}], (method, path)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def _streamed_ok(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, stream=httpx.ByteStream(b"{}"), headers={"content-type": "application/json"})


@pytest.fixture
def gateway() -> tuple[TestClient, FakeDapr]:
    dapr = FakeDapr(app_id="gateway")
    for route in PUBLIC_ROUTES:
        # A fresh streamed answer each time: the gateway relays the app's body as it arrives.
        dapr.answer(route.app_id, route.upstream_path(_concrete(route.path)), _streamed_ok)
    app = _app()
    app.state.settings = SETTINGS
    app.state.sidecar = dapr.sidecar("gateway")
    app.state.api_keys = ApiKeys(app.state.sidecar, SECRET, ttl_seconds=0)
    app.state.limits = Limits(requests_per_minute=10_000)
    app.state.usage = UsageLedger(app.state.sidecar, tokens_per_day=10**9)
    return TestClient(app), dapr


def _use_keys(dapr: FakeDapr, value: str) -> None:
    dapr.secrets[SECRET] = {SECRET: value}


@pytest.mark.parametrize("route", PUBLIC_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_relayed_route_needs_each_of_its_scopes(gateway: tuple[TestClient, FakeDapr], route: Any) -> None:
    client, dapr = gateway
    required = ROUTE_SCOPES[(route.method, route.path)]
    path = _concrete(route.path)
    for scope in required:
        # Every other scope, this one left out: refused, and the answer names what is missing.
        others = " ".join(sorted(set(SCOPES) - {scope}))
        _use_keys(dapr, f"k={others}")
        refused = client.request(route.method, path, headers={"Authorization": "Bearer k"}, json={})
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        body = refused.json()
        assert body["missing_scopes"] == [scope] and scope in body["detail"]
        assert body["required_scopes"] == list(required)
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    # Exactly the route's scopes: past the key check (on to the body's own checks and the app).
    _use_keys(dapr, f"k={' '.join(required)}")
    allowed = client.request(route.method, path, headers={"Authorization": "Bearer k"}, json={})
    assert allowed.status_code not in (401, 403), allowed.text


def test_chat_needs_the_chat_scope(gateway: tuple[TestClient, FakeDapr]) -> None:
    client, dapr = gateway
    _use_keys(dapr, "k=documents:read")
    refused = client.post("/v1/chat/completions", headers={"Authorization": "Bearer k"}, json={})
    assert refused.status_code == 403 and refused.json()["missing_scopes"] == ["chat"]


def test_key_only_routes_take_a_key_without_scopes_and_no_key_is_401(gateway: tuple[TestClient, FakeDapr]) -> None:
    client, dapr = gateway
    _use_keys(dapr, "k=")
    assert client.get("/v1/usage", headers={"Authorization": "Bearer k"}).status_code == 200
    assert client.get("/v1/usage", headers={"Authorization": "Bearer other"}).status_code == 401
    assert client.get("/v1/usage").status_code == 401


def test_a_rotated_key_is_read_again_after_expire() -> None:
    import asyncio

    dapr = FakeDapr(app_id="gateway")
    keys = ApiKeys(dapr.sidecar("gateway"), SECRET, ttl_seconds=3600)

    async def scenario() -> tuple[Any, Any, Any]:
        _use_keys(dapr, "old=chat")
        first = await keys.find("old")
        _use_keys(dapr, "new=chat")
        cached = await keys.find("new")  # within the TTL: the copy held still answers
        keys.expire()  # what SIGHUP does
        return first, cached, (await keys.find("new"), await keys.find("old"))

    first, cached, (new, old) = asyncio.run(scenario())
    assert first is not None and cached is None and new is not None and old is None


@pytest.mark.parametrize("route", PUBLIC_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_an_apps_problem_names_the_callers_path_as_its_instance(gateway: tuple[TestClient, FakeDapr], route) -> None:
    # A new-user trial: the registry's 404 through the gateway named `/v1/models/...`, the
    # registry app's own path, not the `/v1/registry/models/...` the caller used.
    client, dapr = gateway
    path = _concrete(route.path)
    own = route.upstream_path(path)
    problem = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such x1.", "instance": own}
    answer = httpx.Response(404, json=problem, headers={"content-type": "application/problem+json"})
    dapr.answer(route.app_id, own, answer)
    _use_keys(dapr, "k")
    relayed = client.request(route.method, path, headers={"Authorization": "Bearer k"}, json={})
    assert relayed.status_code == 404 and relayed.headers["content-type"] == "application/problem+json"
    # OpenAI's error object is added for its SDKs (gateway.openai_errors); nothing else changes.
    error = {"message": "No such x1.", "type": "invalid_request_error", "param": None, "code": None}
    assert relayed.json() == {**problem, "instance": path, "error": error}
