"""Every error the gateway answers carries OpenAI's `error` object beside the problem+json members.

The platform answers errors as RFC 9457 problem+json (genai_platform.errors). OpenAI's SDKs read
an error answer's `error` member instead (`{"message", "type", "param", "code"}`): without it a
client sees "Error code: 401" with `type` "about:blank" and no `code` (a new-user trial with the
`openai` package: a bad `temperature` showed "Error code: 422" and no field). So this middleware
adds `error` (`genai_platform.contracts.openai.error_of_problem`) to each problem+json answer that
lacks one, whoever wrote it: the gateway's own handlers, its size limits, or an app's problem
relayed through Dapr. Nothing else changes: the status, the headers (less the old length) and
every member of the problem stay, so a client reading problem+json reads what it read before.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genai_platform.contracts.openai import error_of_problem
from genai_platform.errors import PROBLEM_JSON

# A problem+json body is a few hundred bytes; a larger one is passed on as it is, unread.
MAX_PROBLEM_BYTES = 64 << 10


def with_error(body: bytes) -> bytes:
    """`body` (a problem+json answer) with OpenAI's `error` member; unchanged when it has one, or is
    not a JSON object."""
    try:
        problem = json.loads(body)
    except ValueError:
        return body
    if not isinstance(problem, dict) or isinstance(problem.get("error"), dict):
        return body
    return json.dumps({**problem, "error": error_of_problem(problem)}).encode()


class OpenAIErrorMiddleware:
    """ASGI middleware: adds `error` to problem+json answers (module docstring); streams any other
    answer through untouched, a chunk at a time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call (HTTP only), holding back a problem+json answer until it is whole."""
        # A HEAD answer has no body to add to (its length is the GET's).
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        held = bytearray()

        async def rewriting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                length = headers.get(b"content-length", b"")
                if (
                    message["status"] >= 400
                    and PROBLEM_JSON.encode() in headers.get(b"content-type", b"")
                    and not (length.isdigit() and int(length) > MAX_PROBLEM_BYTES)
                ):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                held.extend(message.get("body", b""))
                more, small = message.get("more_body", False), len(held) <= MAX_PROBLEM_BYTES
                if more and small:
                    return
                # Whole and small: rewritten. Past the limit: passed on as sent, unread.
                body = with_error(bytes(held)) if small else bytes(held)
                headers = [(k, v) for k, v in start.get("headers") or [] if k != b"content-length" or not small]
                if small:
                    headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": more})
                start = None  # the rest, if any, is passed on as it comes
                return
            await send(message)

        await self.app(scope, receive, rewriting_send)
