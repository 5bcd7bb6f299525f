"""API keys and their scopes: held in the Dapr secret store, checked in constant time on every public route.

The secret (`gateway-api-keys`) is a comma-separated list of entries, each `<key>` or
`<key>=<scope> <scope> ...` (scopes space-separated, as OAuth 2.0 writes them, RFC 6749 §3.3).
A bare key holds every scope (`*`): the form of the dev key scripts/secrets.sh generates, so
that one key serves `make up`, the tests and the README's commands.

Among the scopes, `project=<name>` puts the key in a project, as OpenAI's keys belong to one:
the keys of a project share one usage record (requests, the daily token quota, the request rate).
A key without a project has a record of its own, named by its SHA-256 digest; rotating it
(`scripts/api_keys.py rotate`) gives the new key `project=<that digest>`, so the usage counted so
far carries over instead of starting again. A project name is 1-64 characters of letters, digits,
`.`, `_` and `-`; an entry with another is refused (skipped, with a warning naming the entry),
since the key would otherwise be counted apart from its project.

Rotation without a restart: the gateway reads the secret again every
`GATEWAY_API_KEYS_TTL_SECONDS` (60 s), and at once on SIGHUP. The sidecar's secret store must
see the new value too: the Kubernetes store reads the Secret on each request; Dapr's local file
store reads its file only when the component is initialised, so locally `scripts/api_keys.py`
writes the keys, rewrites the gateway's own store component (`gateway-keys`, SECRET_STORE under
`make up`) so that daprd's hot reload initialises that store again, and then sends SIGHUP to
this app.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from gateway.scopes import ALL, SCOPES, missing_scopes, route_scopes
from genai_platform.dapr import DaprError, Sidecar
from genai_platform.errors import Problem
from genai_platform.security import tokens_match

log = logging.getLogger(__name__)


PROJECT = "project"
PROJECT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class ApiKey:
    """One key, the scopes it holds and its project (None: a usage record of its own)."""

    key: str
    scopes: frozenset[str]
    project: str | None = None

    @property
    def account(self) -> str:
        """What its usage is counted under (gateway.usage, gateway.limits): its project, else the
        key's SHA-256 digest in hex (the key itself is never stored)."""
        return self.project or key_digest(self.key)


def key_digest(key: str) -> str:
    """A key's SHA-256 digest in hex: the usage account of a key without a project."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_keys(raw: str) -> tuple[ApiKey, ...]:
    """The keys of the secret's value (format in the module docstring); empty entries are skipped.

    A scope the gateway does not know is dropped with a warning naming it (never the key), so a
    typo grants nothing rather than failing every key. An entry whose `project=` is not a project
    name, or that names another attribute, is skipped with a warning naming the entry's position.
    """
    keys = []
    for position, entry in enumerate(raw.split(","), start=1):
        key, sep, rest = entry.strip().partition("=")
        key = key.strip()
        if not key:
            continue
        words = rest.split() if sep else []
        attributes = dict(word.partition("=")[::2] for word in words if "=" in word)
        project = attributes.pop(PROJECT, None)
        if attributes or (project is not None and not PROJECT_NAME.fullmatch(project)):
            wrong = sorted(attributes) or [PROJECT]
            log.warning("API key entry %d is skipped: %s= is not an attribute or value it may hold", position, wrong[0])
            continue
        scopes = [word for word in words if "=" not in word]
        granted = set(scopes) if sep else {ALL}
        unknown = granted - set(SCOPES) - {ALL}
        if unknown:
            log.warning("API key entry %d names unknown scopes %s: ignored", position, sorted(unknown))
        keys.append(ApiKey(key, frozenset(granted - unknown), project))
    return tuple(keys)


class ApiKeys:
    """The valid keys with their scopes, fetched from the secret store and read again after a TTL."""

    def __init__(self, sidecar: Sidecar, secret_name: str, ttl_seconds: float) -> None:
        self._sidecar = sidecar
        self._secret_name = secret_name
        self._ttl = ttl_seconds
        self._keys: tuple[ApiKey, ...] = ()
        self._loaded_at = float("-inf")

    def expire(self) -> None:
        """Read the secret again on the next request (a key was rotated)."""
        self._loaded_at = float("-inf")

    def expire_on_sighup(self) -> None:
        """Call `expire` when the process gets SIGHUP (`kill -HUP <gateway pid>` after a rotation).

        Only the main thread's running loop can take signals; elsewhere (an in-process test
        client) the TTL alone re-reads the keys.
        """

        def on_sighup() -> None:
            log.info("SIGHUP: API keys are read again on the next request")
            self.expire()

        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
        except (RuntimeError, ValueError, NotImplementedError):
            log.debug("SIGHUP cannot be watched here; API keys are read again after their TTL")

    async def current(self) -> tuple[ApiKey, ...]:
        """The keys, from the secret store when the copy held is older than the TTL.

        Raises `DaprError` when the secret store cannot be read.
        """
        if time.monotonic() - self._loaded_at > self._ttl:
            secret = await self._sidecar.get_secret(self._secret_name)
            raw = secret.get(self._secret_name) or next(iter(secret.values()), "")
            self._keys = parse_keys(raw)
            self._loaded_at = time.monotonic()
        return self._keys

    async def find(self, presented: str) -> ApiKey | None:
        """The key matching `presented`, or None. Raises `DaprError` as `current` does."""
        found = None
        # Compare with every key, so the time taken does not tell which one nearly matched.
        for candidate in await self.current():
            if tokens_match(presented, candidate.key) and found is None:
                found = candidate
        return found


_bearer = HTTPBearer(auto_error=False, description="An API key of the platform, as `Authorization: Bearer <key>`.")


async def require_api_key(
    request: Request,
    security_scopes: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """Check the caller's key and that it holds every scope the route declares.

    Counts the request against the key's usage (gateway.usage). Raises 401 without a valid key,
    403 naming the missing scopes (`required_scopes`, `missing_scopes`), 503 when the secret or
    state store cannot be read. Keeps the key on `request.state.api_key` for the route
    (`ApiKeyDep`). These routes spend no model tokens, so the token quota refuses none of
    them; the generation routes count with `counted_alongside`, which does.
    """
    key = await require_api_key_uncounted(request, security_scopes, credentials)
    # Counted by every replica together.
    await request.app.state.usage.admit(key.account, spends_tokens=False)
    return key


async def require_api_key_uncounted(
    request: Request,
    security_scopes: SecurityScopes,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """`require_api_key` for a route that counts the request itself (`counted_alongside`): the
    generation routes, which count it while their input rails run."""
    presented = credentials.credentials if credentials else request.headers.get("x-api-key")
    unauthorized = Problem(401, "A valid API key is required.", headers={"WWW-Authenticate": "Bearer"})
    if not presented:
        raise unauthorized
    try:
        key = await request.app.state.api_keys.find(presented)
    except DaprError as error:
        raise Problem(503, "API keys cannot be read from the secret store right now.") from error
    if key is None:
        raise unauthorized
    required = tuple(security_scopes.scopes)
    if missing := missing_scopes(key.scopes, required):
        raise Problem(
            403,
            f"This API key lacks the scope{'s' if len(missing) > 1 else ''} {', '.join(missing)}.",
            title="Insufficient scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{" ".join(required)}"'},
            required_scopes=list(required),
            missing_scopes=missing,
        )
    request.state.api_key = key
    return key


@asynccontextmanager
async def counted_alongside(request: Request, account: str) -> AsyncIterator[None]:
    """Count the request against the usage `account` while the block runs (a generation's input rails,
    retrieval and render: the state store's read and write no longer come before them).

    Raises, when the block ends, what `require_api_key` raises for the count (429, 503), in
    place of the block's own error: a key over its quota gets the 429 whatever it sent. Nothing
    of the request reaches inference before the count has passed: the block must end first.
    """
    admission = asyncio.create_task(request.app.state.usage.admit(account))
    try:
        yield
    finally:
        # Waited for even when the client left, so the request is counted all the same.
        await asyncio.wait({admission})
        admission.result()


def requires_key(method: str, path: str, *, counted_by_route: bool = False) -> object:
    """The dependency a public route lists: a valid key holding the route's scopes
    (`gateway.scopes.ROUTE_SCOPES`, which raises LookupError for an undeclared route), the
    request counted (`counted_by_route`: the route counts it with `counted_alongside`).

    In the OpenAPI document the scopes show as the operation's security requirement.
    """
    check = require_api_key_uncounted if counted_by_route else require_api_key
    return Security(check, scopes=list(route_scopes(method, path)))


async def _checked_key(request: Request) -> ApiKey:
    key = getattr(request.state, "api_key", None)
    if key is None:  # a route without `requires_key`: a bug the route-table test catches
        raise RuntimeError(f"{request.method} {request.url.path} has no requires_key dependency")
    return key


# The key `requires_key` accepted, for a route's own use (limits and usage, by `key.account`).
ApiKeyDep = Annotated[ApiKey, Depends(_checked_key)]
