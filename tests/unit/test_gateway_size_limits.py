"""The gateway's size limits (gateway.limits.SizeLimitMiddleware) on a small app: 413 and 431 problem+json."""

from collections.abc import Iterator

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from gateway.limits import SizeLimitMiddleware, SizeLimits
from gateway.settings import GatewaySettings
from genai_platform.errors import install_error_handlers
from harness import ROOT

LIMITS = SizeLimits(model_body=2048, upload_body=8192, body=1024, header=4096)


class Echo(BaseModel):
    text: str


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/chat/completions")
    async def raw(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/v1/documents")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/v1/guard/check")
    async def parsed(body: Echo) -> dict[str, int]:  # FastAPI reads this body itself
        return {"received": len(body.text)}

    app.add_middleware(SizeLimitMiddleware, limits=LIMITS)
    with TestClient(app) as test_client:
        yield test_client


def chunks(size: int, piece: int = 500) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length)."""
    for start in range(0, size, piece):
        yield b"x" * min(piece, size - start)


def assert_problem(response, status: int, limit: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["limit_bytes"] == limit
    assert str(limit) in body["detail"]


@pytest.mark.parametrize(
    ("path", "limit"), [("/v1/chat/completions", 2048), ("/v1/documents", 8192), ("/v1/guard/check", 1024)]
)
def test_each_route_class_has_its_own_body_limit(client: TestClient, path: str, limit: int) -> None:
    assert_problem(client.post(path, content=b"x" * (limit + 1)), 413, limit)
    assert_problem(client.post(path, content=chunks(limit + 1)), 413, limit)


def test_a_body_at_the_limit_passes_whole_and_chunked(client: TestClient) -> None:
    assert client.post("/v1/chat/completions", content=b"x" * 2048).json() == {"received": 2048}
    assert client.post("/v1/chat/completions", content=chunks(2048)).json() == {"received": 2048}
    assert client.post("/v1/guard/check", json={"text": "y" * 900}).json() == {"received": 900}


def test_a_chunked_body_over_the_limit_is_413_where_the_framework_reads_it(client: TestClient) -> None:
    # FastAPI turns a failed body read into a 400 of its own; the middleware answers 413 instead.
    body = b'{"text": "' + b"y" * 2000 + b'"}'
    assert_problem(client.post("/v1/guard/check", content=iter([body[:600], body[600:]])), 413, 1024)


def test_a_trailing_slash_is_the_same_route_class(client: TestClient) -> None:
    assert_problem(client.post("/v1/documents/", content=b"x" * 8193), 413, 8192)


def test_headers_over_the_limit_are_431(client: TestClient) -> None:
    assert_problem(client.post("/v1/chat/completions", content=b"{}", headers={"x-big": "h" * 5000}), 431, 4096)
    ok = client.post("/v1/chat/completions", content=b"{}", headers={"x-big": "h" * 3000})
    assert ok.status_code == 200


def test_every_sidecar_takes_the_largest_body_the_gateway_lets_through() -> None:
    """dapr.yaml's maxBodySize (every sidecar of `make up` and of the tests) is above the gateway's limits,
    and ingestion's largest document fits the gateway's upload limit."""
    from ingestion.settings import IngestionSettings

    units = {"Ki": 1 << 10, "Mi": 1 << 20}
    common = yaml.safe_load((ROOT / "dapr.yaml").read_text())["common"]
    sidecar_body = int(common["maxBodySize"][:-2]) * units[common["maxBodySize"][-2:]]
    sidecar_header = int(common["readBufferSize"][:-2]) * units[common["readBufferSize"][-2:]]
    gateway = GatewaySettings()
    assert max(gateway.max_upload_body_bytes, gateway.max_model_body_bytes, gateway.max_body_bytes) < sidecar_body
    assert gateway.max_header_bytes <= sidecar_header
    assert IngestionSettings().max_document_bytes < gateway.max_upload_body_bytes


def test_the_cluster_sidecars_have_the_same_limits() -> None:
    """k8s/base/apps: every pod's dapr.io annotations carry dapr.yaml's body and header limits."""
    common = yaml.safe_load((ROOT / "dapr.yaml").read_text())["common"]
    manifests = sorted((ROOT / "k8s" / "base" / "apps").glob("*.yaml"))
    assert manifests
    for manifest in manifests:
        deployment = next(d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Deployment")
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["dapr.io/max-body-size"] == common["maxBodySize"], manifest.name
        assert annotations["dapr.io/read-buffer-size"] == common["readBufferSize"], manifest.name
