"""What each API key may do: the scopes, and the scope every public route needs.

A key's scopes are held with it in the secret store (see `gateway.api_keys.parse_keys`). Every
public route is listed in `ROUTE_SCOPES`; the router refuses to build a route missing from it,
so a new route cannot go out without a decision about who may call it. The names follow OAuth
2.0's scope syntax (RFC 6749 §3.3: space-separated tokens, no spaces or quotes inside).
"""

from __future__ import annotations

# Every key with this scope may call every route: the dev key that scripts/secrets.sh makes.
ALL = "*"

SCOPES: dict[str, str] = {
    "chat": "Chat and text completions, embeddings, the served models, the guard check",
    "documents:read": "List and read documents, search the index",
    "documents:write": "Ingest and delete documents",
    "models:read": "Read the model registry",
    "models:promote": "Point a model alias at a version (promotion to production, roll back) or delete one, "
    "and start a workflow that promotes",
    "prompts:read": "List, read and render prompt templates",
    "prompts:write": "Create prompt versions, move their labels and delete prompts",
    "fine-tune": "Upload training files, start, read and cancel fine-tuning jobs and workflows",
    "dead-letters:replay": "Publish a dead letter on its topic again",
    "admin": "The platform's events, dead letters, logs, traces, dashboards and overview",
}

# Routes any valid key may call: the key's own usage, the platform's health and API document.
ANY_KEY: tuple[str, ...] = ()

_READ_DOCS = ("documents:read",)
_PROMPTS_READ, _PROMPTS_WRITE = ("prompts:read",), ("prompts:write",)
_MODELS_READ = ("models:read",)

# (METHOD, path template) -> the scopes a key needs, all of them.
ROUTE_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/chat/completions"): ("chat",),
    ("POST", "/v1/completions"): ("chat",),
    ("GET", "/v1/models"): ("chat",),
    ("GET", "/v1/models/{model}"): ("chat",),
    ("POST", "/v1/embeddings"): ("chat",),
    ("POST", "/v1/guard/check"): ("chat",),
    ("POST", "/v1/documents"): ("documents:write",),
    ("GET", "/v1/documents"): _READ_DOCS,
    ("GET", "/v1/documents/{document_id}"): _READ_DOCS,
    ("DELETE", "/v1/documents/{document_id}"): ("documents:write",),
    ("POST", "/v1/search"): _READ_DOCS,
    ("GET", "/v1/index/documents/{document_id}"): _READ_DOCS,
    ("GET", "/v1/registry/models"): _MODELS_READ,
    ("GET", "/v1/registry/models/{name}"): _MODELS_READ,
    ("GET", "/v1/registry/models/{name}/versions"): _MODELS_READ,
    ("GET", "/v1/registry/models/{name}/versions/{reference}"): _MODELS_READ,
    ("PUT", "/v1/registry/models/{name}/aliases/{alias}"): ("models:promote",),
    ("DELETE", "/v1/registry/models/{name}/aliases/{alias}"): ("models:promote",),
    ("GET", "/v1/prompts"): _PROMPTS_READ,
    ("POST", "/v1/prompts"): _PROMPTS_WRITE,
    ("GET", "/v1/prompts/{name}"): _PROMPTS_READ,
    ("DELETE", "/v1/prompts/{name}"): _PROMPTS_WRITE,
    ("POST", "/v1/prompts/{name}/versions"): _PROMPTS_WRITE,
    ("GET", "/v1/prompts/{name}/versions"): _PROMPTS_READ,
    ("GET", "/v1/prompts/{name}/versions/{ref}"): _PROMPTS_READ,
    ("PUT", "/v1/prompts/{name}/labels/{label}"): _PROMPTS_WRITE,
    ("DELETE", "/v1/prompts/{name}/labels/{label}"): _PROMPTS_WRITE,
    ("POST", "/v1/prompts/{name}/render"): _PROMPTS_READ,
    ("POST", "/v1/files"): ("fine-tune",),
    ("GET", "/v1/files"): ("fine-tune",),
    ("GET", "/v1/files/{file_id}"): ("fine-tune",),
    ("POST", "/v1/fine_tuning/jobs"): ("fine-tune",),
    ("GET", "/v1/fine_tuning/jobs"): ("fine-tune",),
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): ("fine-tune",),
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): ("fine-tune",),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): ("fine-tune",),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints"): ("fine-tune",),
    # The workflow registers and promotes what passes its gate: fine-tuning alone is not enough.
    ("POST", "/v1/fine_tuning/workflows"): ("fine-tune", "models:promote"),
    ("GET", "/v1/fine_tuning/workflows/{instance_id}"): ("fine-tune",),
    ("GET", "/v1/events"): ("admin",),
    ("GET", "/v1/dead-letters"): ("admin",),
    ("GET", "/v1/dead-letters/{letter_id}"): ("admin",),
    ("POST", "/v1/dead-letters/{letter_id}/replay"): ("dead-letters:replay",),
    ("DELETE", "/v1/dead-letters/{letter_id}"): ("admin",),
    ("GET", "/v1/system/overview"): ("admin",),
    ("GET", "/v1/system/dashboards"): ("admin",),
    ("GET", "/v1/system/dashboards/{uid}/data"): ("admin",),
    ("GET", "/v1/logs"): ("admin",),
    ("GET", "/v1/traces/{trace_id}"): ("admin",),
    ("GET", "/v1/usage"): ANY_KEY,
    ("GET", "/v1/system/health"): ANY_KEY,
    ("GET", "/v1/openapi.json"): ANY_KEY,
}


def route_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes a key needs for `method path` (a route's path template).

    Raises LookupError naming the route when it is not in `ROUTE_SCOPES`: every public route
    must be declared there before it can be served.
    """
    try:
        return ROUTE_SCOPES[(method, path)]
    except KeyError:
        raise LookupError(f"{method} {path} declares no scope: add it to gateway.scopes.ROUTE_SCOPES") from None


def missing_scopes(granted: frozenset[str], required: tuple[str, ...]) -> list[str]:
    """The required scopes a key with `granted` lacks, in the route's order (empty: allowed)."""
    if ALL in granted:
        return []
    return [scope for scope in required if scope not in granted]
