"""The guard's stream step for the gateway's unit tests, in process: the real one
(guard.streaming.stream_step) with the shipped policy and one blocked output term, "forbidden".

The one fake sidecar (tests/fakes.py) answers the guard's `v1/guard/output/stream` with
`guard_stream_step`, so a gateway test sees exactly what the guard would release or block.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from guard.chain import Guard
from guard.policy import load_policy
from guard.streaming import stream_step

_POLICY = load_policy()
GUARD = Guard(
    _POLICY.model_copy(
        update={
            "output": _POLICY.output.model_copy(
                update={"blocklist": _POLICY.output.blocklist.model_copy(update={"terms": ("forbidden",)})}
            )
        }
    )
)


def guard_stream_step(request: httpx.Request) -> dict[str, Any]:
    """One step of the guard's `POST /v1/guard/output/stream`, answered by `GUARD`."""
    body = json.loads(request.content)
    step = stream_step(GUARD, body["pending"], body["chunk"], body["final"], json_mode=body.get("json_mode", False))
    return step.to_json()
