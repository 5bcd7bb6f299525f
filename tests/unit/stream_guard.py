"""The guard's stream step for the gateway's unit tests, in process: the real one
(guard.streaming.stream_step) with the shipped policy and one blocked output term, "forbidden".

The one fake sidecar (tests/fakes.py) answers the guard's `v1/guard/output/stream/batch` with
`guard_stream_steps`, so a gateway test sees exactly what the guard would release or block.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from guard.chain import Guard
from guard.policy import load_policy
from guard.streaming import step_with_lookahead

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


def guard_stream_steps(request: httpx.Request) -> dict[str, Any]:
    """The guard's `POST /v1/guard/output/stream/batch`, answered by `GUARD`: each step in order."""
    steps = json.loads(request.content)["steps"]
    answers = [step_with_lookahead(GUARD, s["pending"], s["chunk"], s["final"]) for s in steps]
    return {"steps": [step.to_json(ahead) for step, ahead in answers]}
