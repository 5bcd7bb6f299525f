"""Fixtures of the Kubernetes tests: rendered overlays, and a real cluster with Dapr's control plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kube import KUBECTL, OVERLAYS, Cluster, kustomize, missing_binaries


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    if not KUBECTL.is_file():
        pytest.skip(f"{KUBECTL} is not built: run `make k8s` (scripts/build-k8s.sh)")
    return {overlay: kustomize(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = missing_binaries()
    if missing:
        pytest.skip(f"not built: {', '.join(p.name for p in missing)}; run `make setup` (scripts/build-k8s.sh)")
    workdir = tmp_path_factory.mktemp("k8s")
    running = Cluster(workdir=workdir, log_dir=Path(workdir) / "logs").start()
    yield running
    running.stop()
