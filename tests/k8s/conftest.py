"""Fixtures of the Kubernetes tests: rendered overlays, and a real cluster with Dapr's control plane."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kube import KUBECTL, Cluster, missing_binaries

from harness import ROOT

K8S = ROOT / "k8s"
# Every kustomization a user applies: the overlays, and the smoke Job.
OVERLAYS = ["overlays/local", "overlays/production", "overlays/production-gpu", "jobs/smoke"]
APPS = ["gateway", "ingestion", "features", "training", "registry", "inference", "prompts", "guard", "ui", "monitor"]


def kustomize(path: str) -> list[dict]:
    """`kubectl kustomize` of one kustomization under k8s/, as a list of objects."""
    result = subprocess.run([str(KUBECTL), "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize k8s/{path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


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
