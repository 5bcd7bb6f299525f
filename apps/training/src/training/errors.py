"""What training's stores and job submission refuse, as domain errors.

Each maps to problem+json once through its `status` (genai_platform.errors). The workflow's
activities retry only the transient ones (genai_platform.errors.is_transient): a missing job
fails the activity at once instead of being asked for five more times.
"""

from __future__ import annotations

from genai_platform.errors import Invalid, NotFound, Unavailable


class TrainingFileNotFound(NotFound):
    """No training file of that id (404)."""


class JobNotFound(NotFound):
    """No fine-tuning job of that id (404)."""


class InvalidBaseModel(Invalid):
    """`model` is not a base model reference (422)."""


class BaseModelNotFound(NotFound):
    """The base model named is neither packaged here nor in the registry (404)."""


class BaseModelNotReady(Invalid):
    """The registry version named as the base has no frozen files yet (422)."""


class EmptyCollection(Invalid):
    """The collection named as training data holds no ingested text (422)."""


class CollectionChanged(NotFound):
    """A document of the collection went away while the collection was read (404); reading again may work."""

    transient = True


class DependencyUnavailable(Unavailable):
    """The ingestion service or the model registry did not answer (503, Retry-After 5 s)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})
