"""The platform's readiness, gathered from every app through Dapr service invocation."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from genai_platform.dapr import Sidecar


class AppReadiness(BaseModel):
    """One app's readiness: `reasons` says why not (its own /readyz reasons, or why it was unreachable)."""

    ready: bool
    reasons: list[str]


class SystemHealth(BaseModel):
    """Every app's readiness, this gateway's included; `status` is "ready" only when all are."""

    status: Literal["ready", "degraded"]
    apps: dict[str, AppReadiness]


async def app_readiness(sidecar: Sidecar, app_id: str, timeout: float) -> dict[str, Any]:
    """One app's `AppReadiness` (as a dict), from its /readyz through Dapr within `timeout` seconds; never raises."""
    try:
        response = await sidecar.invoke(app_id, "readyz", method="GET", timeout=timeout)
    except httpx.HTTPError as error:
        return {"ready": False, "reasons": [f"unreachable through Dapr: {type(error).__name__}"]}
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200 and body.get("ready") is True:
        return {"ready": True, "reasons": []}
    reasons = body.get("reasons") or [body.get("message") or f"answered {response.status_code}"]
    return {"ready": False, "reasons": reasons}


async def system_health(sidecar: Sidecar, self_id: str, app_ids: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """Readiness of this gateway and of every app, asked all at once."""
    results = await asyncio.gather(*(app_readiness(sidecar, app_id, timeout) for app_id in app_ids))
    apps = {self_id: {"ready": await sidecar.is_ready(), "reasons": []}, **dict(zip(app_ids, results, strict=True))}
    if not apps[self_id]["ready"]:
        apps[self_id]["reasons"] = ["the gateway's Dapr sidecar is not ready"]
    ready = all(entry["ready"] for entry in apps.values())
    return {"status": "ready" if ready else "degraded", "apps": apps}
