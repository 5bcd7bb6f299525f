"""The first step of every generation route: the body against the platform's OpenAI contract
(genai_platform.contracts.openai), before the guard, retrieval or a sidecar sees it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import ValidationError

from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS, GenerationFields
from genai_platform.errors import Problem, invalid_request, validation_errors
from genai_platform.text import text_errors, unicode_problem


async def json_body(request: Request, what: str) -> Any:
    """The request's JSON body, parsed; `what` names the request in the error.

    Raises `Problem` 422 for a body that is not JSON or nests deeper than Python's recursion limit
    (json.loads raises RecursionError, not ValueError), and the platform's 422 naming each string
    that is not Unicode text (a lone surrogate). genai_platform.text's middleware refuses one before
    any route in a body sent as JSON; this reads any body as JSON whatever its Content-Type says,
    so a body sent as `text/plain` is checked here, the same way.
    """
    try:
        body = await request.json()
    except (ValueError, RecursionError) as error:
        raise Problem(
            422, f"The body must be a JSON {what} in Unicode text, nested at most a few hundred levels."
        ) from error
    if found := list(text_errors(body, ("body",))):
        raise unicode_problem(found)
    return body


def validated_body(
    contract: type[GenerationFields], body: Any, *, max_tokens: int = MAX_COMPLETION_TOKENS
) -> dict[str, Any]:
    """`body` checked against `contract`, as a dict in the shape clients send (roles in lower case).

    Raises `Problem` 422 naming each invalid field (`body.messages.0.role`), as FastAPI's
    validation answers on every app, `UnsupportedField` (400, OpenAI's `error.param`) for a
    field the platform does not serve or does not know, and `TokensOverLimit` (400 naming the
    field) for more answer tokens than `max_tokens`, which inference would refuse only after the
    guard, retrieval and the prompt ran (and a stream's headers were sent).
    """
    if not isinstance(body, dict):
        raise Problem(422, "The body must be a JSON object.", title="Invalid request")
    try:
        request = contract.model_validate(body)
    except ValidationError as error:
        raise invalid_request(validation_errors(error.errors(include_url=False), ("body",))) from error
    request.refuse_unsupported()
    request.check_max_tokens(max_tokens)
    return request.model_dump(mode="json", exclude_unset=True)
