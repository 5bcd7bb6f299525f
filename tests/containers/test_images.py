"""Each app's image, started by testcontainers through podman beside a real daprd.

The container runs as the image's user on a read-only root filesystem (a tmpfs /tmp only), on
the host network bound to 127.0.0.1 like the local run, with its sidecar on the host; it must
answer /healthz and /readyz. `make test` builds and runs the light apps' images. The model apps'
images (features, inference, training: ~6 GB each, PyPI's torch being the CUDA build) are built
and run on demand, so that a run never tests an image older than its code:
    scripts/build-images.sh inference && GENAI_MODEL_IMAGES=1 uv run pytest tests/containers -k inference
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from podman_engine import require_image
from testcontainers.core.container import DockerContainer

from harness import PROFILES, RESILIENCY_DIR, Daprd, free_port, wait_until

LIGHT_APPS = [
    "gateway",
    "ingestion",
    "registry",
    "prompts",
    "guard",
    "ui",
    "monitor",
]
ON_DEMAND = pytest.mark.skipif(
    os.environ.get("GENAI_MODEL_IMAGES") != "1",
    reason="model apps' images are built on demand: scripts/build-images.sh <app>, then GENAI_MODEL_IMAGES=1",
)
MODEL_APPS = [pytest.param(app, marks=ON_DEMAND) for app in ("features", "inference", "training")]
# The model apps write their converted models and caches; with a read-only root, under /tmp.
MODEL_ENV = {
    "HOME": "/tmp",
    "HF_HOME": "/tmp/huggingface",
    "HF_HUB_OFFLINE": "1",
    "INFERENCE_MODEL_CACHE": "/tmp/models",
    "TRAINING_MODEL_CACHE": "/tmp/models",
    "TRAINING_DATA_DIR": "/tmp/training",
}
IMAGE_UID = "10001"


@pytest.fixture
def sidecar(
    request: pytest.FixtureRequest, log_dir: Path, secrets: dict[str, str], default_broker: str
) -> Iterator[Daprd]:
    app = request.node.callspec.params["app"]
    daprd = Daprd(
        app_id=app,
        resources=[PROFILES[default_broker], RESILIENCY_DIR],
        log_dir=log_dir,
        app_port=free_port(),
        dapr_api_token=secrets["dapr-api-token"],
        app_api_token=secrets["app-api-token"],
    ).start()
    yield daprd
    assert daprd.process is not None
    daprd.process.stop()


@pytest.mark.parametrize("app", LIGHT_APPS + MODEL_APPS)
def test_image_serves_health_as_its_user_on_a_read_only_root(
    docker_host: str, sidecar: Daprd, secrets: dict[str, str], app: str
) -> None:
    image = require_image(app)
    model_app = app in {"features", "inference", "training"}
    container = (
        DockerContainer(image)
        .with_envs(**(MODEL_ENV if model_app else {}))
        .with_env("APP_HOST", "127.0.0.1")
        .with_env("APP_PORT", str(sidecar.app_port))
        .with_env("DAPR_HTTP_PORT", str(sidecar.http_port))
        .with_env("DAPR_GRPC_PORT", str(sidecar.grpc_port))
        .with_env("DAPR_API_TOKEN", secrets["dapr-api-token"])
        .with_env("APP_API_TOKEN", secrets["app-api-token"])
        .with_env("PLATFORM_ENV", "test")
        # podman reads the value as mount options (Docker takes "size=..." there too).
        .with_tmpfs_mount("/tmp", "rw,size=2g" if model_app else "rw,size=64m")
        .with_kwargs(network_mode="host", read_only=True)
    )
    with container:
        wrapped = container.get_wrapped_container()
        base = f"http://127.0.0.1:{sidecar.app_port}"

        def answers(path: str) -> bool:
            wrapped.reload()
            assert wrapped.status == "running", f"{image} exited:\n{wrapped.logs().decode(errors='replace')[-3000:]}"
            return httpx.get(base + path, timeout=2).status_code == 200

        wait_until(lambda: answers("/healthz"), what=f"{image} /healthz", timeout=60, interval=0.3)
        sidecar.wait_ready(timeout=60)
        # A model app is ready once its model is loaded (inference converts the packaged GGUF first).
        ready_within = 300 if model_app else 60
        wait_until(lambda: answers("/readyz"), what=f"{image} /readyz", timeout=ready_within, interval=0.5)
        # Swagger UI's files (git-ignored copies) came in the platform library's wheel: /docs works offline.
        sidecar_only = {"dapr-api-token": secrets["app-api-token"]}
        bundle = httpx.get(f"{base}/docs/static/vendor/swagger-ui-bundle.js", headers=sidecar_only, timeout=5)
        assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")

        uid = wrapped.exec_run(["id", "-u"])
        assert (uid.exit_code, uid.output.decode().strip()) == (0, IMAGE_UID)
        write = wrapped.exec_run(["sh", "-c", "echo x > /app/probe"])
        assert write.exit_code != 0 and b"Read-only file system" in write.output
        # No compiler and no uv in the final stage.
        assert wrapped.exec_run(["sh", "-c", "command -v gcc || command -v cc || command -v uv"]).exit_code != 0
