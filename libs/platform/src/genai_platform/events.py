"""The platform's events: topic names, the CloudEvent envelope, and subscriber answers."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Topic(StrEnum):
    DOCUMENTS_SUBMIT = "documents.submit"
    DOCUMENTS_INGESTED = "documents.ingested"
    # A document was deleted: its chunks must leave every index built from it.
    DOCUMENTS_DELETED = "documents.deleted"
    CHUNKS_INDEXED = "chunks.indexed"
    TRAINING_REQUESTED = "training.requested"
    TRAINING_PROGRESS = "training.progress"
    TRAINING_COMPLETED = "training.completed"
    TRAINING_FAILED = "training.failed"
    MODEL_REGISTERED = "model.registered"
    MODEL_PROMOTED = "model.promoted"
    PROMPT_UPDATED = "prompt.updated"
    GUARD_VIOLATION = "guard.violation"
    # Where a message goes once its retries are spent (set on each Subscription).
    DEAD_LETTER = "deadletter"


class Delivery(StrEnum):
    """What a subscriber tells Dapr about one message. Never answer 404: Dapr drops it."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class DeliveryAnswer(BaseModel):
    status: Delivery


class CloudEvent(BaseModel):
    """The envelope Dapr wraps around every published payload."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    source: str = ""
    type: str = ""
    specversion: str = "1.0"
    topic: str = ""
    pubsubname: str = ""
    datacontenttype: str = "application/json"
    traceparent: str | None = None
    data: Any = None
    time: str | None = None
    extensions: dict[str, Any] = Field(default_factory=dict, exclude=True)
