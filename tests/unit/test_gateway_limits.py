"""Per-key rate limits (token quotas: test_gateway_usage.py), on a clock the test moves."""

import pytest

from gateway.limits import Limits, TokenBucket
from gateway.proxy import UsageMeter
from genai_platform.errors import Problem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(capacity=2, period=60.0, clock=clock)
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    assert bucket.take() == pytest.approx(30.0)
    clock.now += 30.0
    assert bucket.take() == 0.0


def test_over_the_rate_is_a_429_with_retry_after_per_key() -> None:
    clock = Clock()
    limits = Limits(requests_per_minute=1, clock=clock)
    limits.admit("key-a")
    with pytest.raises(Problem) as refused:
        limits.admit("key-a")
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "60"
    limits.admit("key-b")  # another key has its own budget


def test_usage_is_read_from_a_json_answer_and_from_a_stream() -> None:
    answer = UsageMeter()
    answer.feed(b'{"id": "c1", "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}')
    answer.close()
    assert answer.total_tokens == 12

    stream = UsageMeter()
    for chunk in (
        b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n',
        b'data: {"choices": [], "usa',
        b'ge": {"total_tokens": 9}}\n\n',
        b"data: [DONE]\n\n",
    ):
        stream.feed(chunk)
    stream.close()
    assert stream.total_tokens == 9


def test_the_registry_is_public_under_its_own_prefix_and_rewritten_to_its_path() -> None:
    from gateway.routes import PUBLIC_ROUTES, schema_app_paths, schema_sources
    from gateway.scopes import route_scopes

    registry = [route for route in PUBLIC_ROUTES if route.app_id == "registry"]
    assert registry and all(route.path.startswith("/v1/registry/models") for route in registry)
    promote = next(route for route in registry if route.method == "PUT")
    assert promote.upstream_path("/v1/registry/models/m/aliases/production") == "/v1/models/m/aliases/production"
    # Deleting an alias is a promotion's write too: the same path, the same scope.
    delete = next(route for route in registry if route.method == "DELETE")
    assert delete.path == promote.path and delete.upstream_path("/v1/registry/models/m/aliases/a") == (
        "/v1/models/m/aliases/a"
    )
    assert route_scopes("DELETE", delete.path) == route_scopes("PUT", promote.path) == ("models:promote",)
    # OpenAI's /v1/models stays inference's; a rewritten route's schema is looked up under its app's path.
    assert schema_sources()[("GET", "/v1/models")] == "inference"
    assert schema_sources()[("GET", "/v1/registry/models")] == "registry"
    assert schema_app_paths()[("GET", "/v1/registry/models/{name}")] == "/v1/models/{name}"
