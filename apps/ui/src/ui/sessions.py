"""Sign-in sessions: the user's API key stays on the server, in Dapr's state store.

The browser holds only a signed, random session id in an HttpOnly, SameSite=Strict cookie
(Secure over TLS); the key never reaches a page or its scripts. Sessions live in the state
store, not this process, so they survive a restart and work across replicas; the store's
`ttlInSeconds` ends them. Each session carries its CSRF token (the synchronizer token pattern,
OWASP CSRF Prevention Cheat Sheet), sent back by every state-changing form.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from itsdangerous import BadSignature, Signer

from genai_platform.dapr import DaprError, Sidecar

SESSION_COOKIE = "ui_session"
SIGNING_KEY = "session-signing-key"


@dataclass
class Session:
    id: str
    api_key: str
    csrf_token: str
    created: float
    # The answers of the chat under way, oldest first (ids of answers kept in the state store).
    conversation: list[str] = field(default_factory=list)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


async def signing_key(sidecar: Sidecar, configured: str | None) -> str:
    """The configured key, else the one kept in the state store (made by the first replica to start)."""
    if configured:
        return configured
    stored = await sidecar.get_state(SIGNING_KEY)
    if stored is None:
        # first-write: when two replicas start at once, one key wins and both read it back.
        with contextlib.suppress(DaprError):  # the other replica's write won: read it below
            await sidecar.save_state(SIGNING_KEY, secrets.token_urlsafe(32), concurrency="first-write")
        stored = await sidecar.get_state(SIGNING_KEY)
    if stored is None or not isinstance(stored.value, str):
        raise RuntimeError("the session signing key could not be kept in the state store")
    return stored.value


class SessionStore:
    def __init__(self, sidecar: Sidecar, configured_key: str | None, ttl_seconds: int) -> None:
        self._sidecar = sidecar
        self._configured_key = configured_key
        self._signer_made: Signer | None = None
        self.ttl_seconds = ttl_seconds

    async def signer(self) -> Signer:
        # Made on first use, not at start-up: the sidecar may still be loading its components then.
        if self._signer_made is None:
            key = await signing_key(self._sidecar, self._configured_key)
            self._signer_made = Signer(key, salt="ui-session")
        return self._signer_made

    @staticmethod
    def _key(session_id: str) -> str:
        return f"session:{session_id}"

    async def create(self, api_key: str) -> tuple[Session, str]:
        """A new session for `api_key`, and the cookie value that names it."""
        session = Session(secrets.token_urlsafe(32), api_key, secrets.token_urlsafe(32), time.time())
        await self.save(session)
        return session, (await self.signer()).sign(session.id).decode()

    async def save(self, session: Session) -> None:
        remaining = int(session.created + self.ttl_seconds - time.time())
        await self._sidecar.save_states(
            [(self._key(session.id), asdict(session))], metadata={"ttlInSeconds": str(max(1, remaining))}
        )

    async def load(self, cookie: str | None) -> Session | None:
        """The session a cookie names; None when it is missing, forged, expired or signed out."""
        if not cookie:
            return None
        session_id = await self.unsign(cookie)
        if session_id is None:
            return None
        item = await self._sidecar.get_state(self._key(session_id))
        if item is None or not isinstance(item.value, dict):
            return None
        value: dict[str, Any] = item.value
        session = Session(**value)
        if time.time() - session.created > self.ttl_seconds:
            return None  # stores without TTLs keep the record; it is still over
        return session

    async def delete(self, session: Session) -> None:
        await self._sidecar.delete_state(self._key(session.id))

    async def sign(self, value: str) -> str:
        return (await self.signer()).sign(value).decode()

    async def unsign(self, value: str | None) -> str | None:
        """The value a signed cookie holds; None when it is missing or its signature is wrong."""
        if not value:
            return None
        try:
            return (await self.signer()).unsign(value).decode()
        except BadSignature:
            return None
