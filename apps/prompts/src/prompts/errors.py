"""What the prompt store refuses, as domain errors mapped to problem+json once (genai_platform.errors)."""

from __future__ import annotations

from genai_platform.errors import Conflict, NotFound


class PromptNotFound(NotFound):
    """No prompt of that name (404)."""


class PromptVersionNotFound(NotFound):
    """The prompt has no such version, or no version under that label (404); `version` or `label` says which."""


class LabelNotFound(NotFound):
    """The prompt has no such label to remove (404)."""


class PromptExists(Conflict):
    """A prompt of that name exists already (409)."""


class LabelReserved(Conflict):
    """`latest` is kept by the service: it cannot be moved or removed (409)."""


class LabelMoved(Conflict):
    """A conditional label move found the label elsewhere (409); `current_version` says where."""
