"""Ingestion and features beside real sidecars, started once for a test module."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness import INGESTION_DAPRD_ARGS, AppWithSidecar, start_pair, wait_until


@dataclass
class Knowledge:
    ingestion: AppWithSidecar
    features: AppWithSidecar

    def invoke(self, app_id: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # Through the app's own sidecar: another app's identity would be refused by the callee's
        # access policy (dapr-config/access/), which lets only the gateway call these routes.
        pair = {"ingestion": self.ingestion, "features": self.features}[app_id]
        with pair.sidecar.client() as dapr:
            return dapr.request(method, f"/v1.0/invoke/{app_id}/method/{path.lstrip('/')}", timeout=60.0, **kwargs)

    def search(self, query: str, **params: Any) -> list[dict[str, Any]]:
        response = self.invoke("features", "POST", "v1/search", json={"query": query, **params})
        response.raise_for_status()
        return response.json()["results"]

    def wait_searchable(self, marker: str, document_id: str, timeout: float = 90.0, **params: Any) -> dict:
        def found() -> dict | None:
            hits = self.search(marker, mode="keyword", k=5, **params)
            return next((hit for hit in hits if hit["document_id"] == document_id), None)

        return wait_until(found, what=f"{document_id} searchable", timeout=timeout, watch=self.processes)

    def wait_gone(self, marker: str, document_id: str, timeout: float = 60.0, **params: Any) -> None:
        def gone() -> bool:
            hits = self.search(marker, mode="keyword", k=20, **params)
            return all(hit["document_id"] != document_id for hit in hits)

        wait_until(gone, what=f"{document_id} gone from the index", timeout=timeout, watch=self.processes)

    @property
    def processes(self):
        return [*self.ingestion.processes, *self.features.processes]

    def stop(self) -> None:
        for pair in (self.features, self.ingestion):
            pair.stop()


def start_knowledge(
    log_dir: Path,
    secrets: dict[str, str],
    *,
    resources: list[Path] | None = None,
    ingestion_env: dict[str, str] | None = None,
) -> Knowledge:
    """Features, then ingestion (which publishes to it), each beside its own sidecar."""
    features = start_pair("features", log_dir, secrets, resources=resources)
    try:
        ingestion = start_pair(
            "ingestion",
            log_dir,
            secrets,
            resources=resources,
            env=ingestion_env,
            extra_args=INGESTION_DAPRD_ARGS,
        )
    except BaseException:
        features.stop()
        raise
    return Knowledge(ingestion, features)


def elapsed(start: float) -> float:
    return time.monotonic() - start
