"""What the prompt store refuses, as domain errors mapped to problem+json once (genai_platform.errors)."""

from __future__ import annotations

from genai_platform.errors import Conflict, Invalid, NotFound


class PromptNotFound(NotFound):
    """No prompt of that name (404)."""


class PromptVersionNotFound(NotFound):
    """The prompt has no such version, or no version under that label (404); `version` or `label` says which."""


class LabelNotFound(NotFound):
    """The prompt has no such label to remove (404)."""


class PromptExists(Conflict):
    """A prompt of that name exists already (409)."""


class DeletedWhileCreated(Conflict):
    """A prompt being created was deleted before its first version was in place (409): the delete
    won; creating it again makes a new prompt."""


class LabelReserved(Conflict):
    """`latest` is kept by the service: it cannot be moved or removed (409)."""


class LabelMoved(Conflict):
    """A conditional label move found the label elsewhere (409); `current_version` says where."""


class OverLimit(Invalid):
    """A version's value over one of the platform's limits (422, in the shape of any refused
    request: title "Invalid request", `errors` naming the field's `location`; `limit` and
    `limit_value` name the limit, as every limit of the platform is named)."""

    title = "Invalid request"

    def __init__(self, location: str, message: str, *, limit: str, limit_value: int) -> None:
        errors = [{"location": location, "message": message}]
        super().__init__(message, errors=errors, limit=limit, limit_value=limit_value)
