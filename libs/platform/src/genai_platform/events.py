"""The platform's events: topics, one payload model per topic, who sends and who receives them.

`CONTRACTS` is the one list of topic -> payload model, producers and consumers; the event
catalogue (docs/events.md, `python -m genai_platform.catalogue`) is generated from it, and unit
tests hold it to the code (tests/unit/test_events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genai_platform.contracts.documents import COLLECTION_PATTERN
from genai_platform.contracts.registry import Lineage


class Topic(StrEnum):
    """The platform's pub/sub topics; `CONTRACTS` below names each one's payload model, producers and consumers."""

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
    # An alert rule of monitoring/rules started or stopped firing (Prometheus -> Alertmanager -> monitor).
    ALERT_FIRED = "alert.fired"
    ALERT_RESOLVED = "alert.resolved"
    # Where a message goes once its retries are spent (set on each Subscription).
    DEAD_LETTER = "deadletter"


class Delivery(StrEnum):
    """What a subscriber tells Dapr about one message. Never answer 404: Dapr drops it."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


class DeliveryAnswer(BaseModel):
    """The body of a subscriber's answer to Dapr: `{"status": "SUCCESS" | "RETRY" | "DROP"}`."""

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


# --- Payloads: one model per topic ------------------------------------------------------------
# Senders build these and publish `model_dump(mode="json")`; receivers validate with the same
# model (in `genai_platform.subscriptions`). Fields a receiver may not find in events published
# before the field existed have defaults, and every model ignores fields it does not know, so a
# producer can add a field before its consumers read it.


class Payload(BaseModel):
    """Base of every event payload: unknown fields are ignored (a newer producer may add some)."""

    model_config = ConfigDict(extra="ignore")


class DocumentMeta(Payload):
    """What the caller says about a document."""

    title: str | None = Field(None, max_length=500, description="Default: the document's own title or first line.")
    source: str | None = Field(None, max_length=2000, description="Where it came from (a URL, a file name).")
    tags: list[str] = Field(default_factory=list, max_length=50)
    collection: str = Field(
        "default", min_length=1, max_length=100, pattern=f"^{COLLECTION_PATTERN}$", description="Searched together."
    )


class DocumentSubmit(DocumentMeta):
    """`documents.submit`: a document to ingest, the body of ingestion's JSON `POST /v1/documents`.

    Exactly one of `text`, `url` (fetched behind ingestion's SSRF guard) or `path` (inside the
    folder ingestion allows) is given; anything else fails validation.
    """

    text: str | None = Field(None, min_length=1, description="The document itself, as text.")
    url: str | None = Field(None, max_length=2000, description="An http(s) URL for ingestion to fetch.")
    path: str | None = Field(None, max_length=1000, description="A file inside ingestion's allowed folder.")
    format: str | None = Field(None, description="text, markdown, html, pdf, json, jsonl, csv; default: guessed")
    text_field: str = Field("text", description="JSON/JSONL: the field that holds the text (a.b for nested)")
    columns: list[str] = Field(default_factory=list, description="CSV: the columns that hold the text")

    @model_validator(mode="after")
    def _one_source(self) -> DocumentSubmit:
        if sum(value is not None for value in (self.text, self.url, self.path)) != 1:
            raise ValueError("give exactly one of text, url or path")
        return self


class IngestedChunk(Payload):
    """One chunk of an ingested document, as `documents.ingested` carries it."""

    id: str = Field(description="`<document_id>:<index>`, stable for the same content.")
    index: int = Field(description="Position of the chunk in the document, from 0.")
    text: str = Field(min_length=1, description="The chunk's cleaned text.")
    hash: str = Field(description="sha256 (hex) of `text`: an index re-embeds only chunks whose hash changed.")
    document_id: str | None = Field(None, description="The document the chunk belongs to.")
    tokens: int | None = Field(None, ge=0, description="Length in the chunker's tokens.")
    heading: str | None = Field(None, description="The nearest heading above the chunk, if any.")


class DocumentIngested(Payload):
    """`documents.ingested`: one part of a stored document's chunks, for indexes to embed.

    A long document is published in `parts` events of at most `INGESTION_CHUNKS_PER_EVENT`
    chunks each (bulk publish). `revision` orders ingestions of the same content id across a
    delete (docs/architecture-notes.md, "Two topics, no order between them").
    """

    document_id: str = Field(description="`doc-<sha256 prefix>` of the cleaned content.")
    title: str = ""
    collection: str = "default"
    source: str | None = Field(None, description="Where the document came from: a URL, `file:<path>`, `inbox:<name>`.")
    tags: list[str] = Field(default_factory=list)
    content_hash: str | None = Field(None, description="sha256 (hex) of the cleaned text.")
    # Events published before revisions existed are the document's first ingestion.
    revision: int = Field(1, ge=1, description="Which ingestion of this content id, from 1.")
    part: int = Field(0, ge=0, description="This event's part, from 0.")
    parts: int = Field(1, ge=1, description="How many events carry this revision's chunks.")
    chunks: list[IngestedChunk]


class DocumentDeleted(Payload):
    """`documents.deleted`: a document's revision was deleted; its chunks must leave every index."""

    document_id: str
    collection: str | None = None
    chunk_count: int | None = Field(None, ge=0, description="How many chunks the deleted revision had.")
    revision: int = Field(1, ge=1, description="The revision deleted: later events of it are refused.")


class ChunksIndexed(Payload):
    """`chunks.indexed`: features indexed one part of a document (searchable from now on)."""

    document_id: str
    collection: str
    revision: int = Field(ge=1)
    part: int = Field(ge=0)
    parts: int = Field(ge=1)
    chunk_ids: list[str]
    embedded: int = Field(ge=0, description="How many of the chunks were embedded now (the rest reused vectors).")


class TrainingRequested(Payload):
    """`training.requested`: a fine-tuning job was accepted and its worker started."""

    job_id: str = Field(description="`ftjob-...`")
    model: str = Field(description="The base model, `<registry model>:<version>` or a folder.")
    method: str = Field(description="`lora` or `full`.")
    training_file: str = Field(description="`file-...`: the uploaded file, or a collection's snapshot.")


class TrainingProgress(Payload):
    """`training.progress`: one optimizer step of a job (advisory: the job's events list every step)."""

    job_id: str
    step: int = Field(ge=1, description="Steps done, from 1.")
    total_steps: int = Field(ge=1)
    loss: float = Field(description="Mean training loss over the step's batch (cross-entropy, nats per token).")
    learning_rate: float
    tokens_per_second: float = Field(ge=0, description="Tokens trained per second of wall time in this step.")


class TrainingCompleted(Payload):
    """`training.completed`: a job succeeded; `model`/`version` name the registry version it became."""

    job_id: str
    output_dir: str = Field(description="Folder holding the trained weights on the training host.")
    final_loss: float | None = Field(None, description="The last step's training loss.")
    metrics: dict[str, float] = Field(default_factory=dict, description="train_loss, eval_loss, base_eval_loss, ...")
    model: str | None = Field(None, description="The registry model, when the result was registered.")
    version: int | None = Field(None, ge=1, description="The registry version number, when registered.")
    dataset_snapshot_id: str | None = Field(None, description="sha256 of the training data.")


class TrainingFailed(Payload):
    """`training.failed`: a job ended without a result."""

    job_id: str
    code: str = Field(description="A short machine-readable reason, e.g. `worker_failed`, `registration_failed`.")
    reason: str = Field(description="A human-readable explanation (at most a few hundred characters).")


class ModelRegistered(Payload):
    """`model.registered`: a registry version became ready (its files are frozen, sha256-checked)."""

    model: str
    version: int = Field(ge=1, description="The registry's version number.")
    lineage: Lineage = Field(default_factory=Lineage, description="The registry's lineage of the version.")
    files: list[str] = Field(default_factory=list, description="The version's file names, sorted.")


class ModelPromoted(Payload):
    """`model.promoted`: a registry alias (`production`, `staging`) now points at `version`, or,
    with `version` null, was deleted.

    `version` is the registry's version number, an integer; inference labels the engine serving
    it with the number as text. `path` is inference's extension for a folder it can read instead
    of a registry download; an event names `model`, `path` or both. A deleted alias (the
    registry's `DELETE /v1/models/{name}/aliases/{alias}`) names `model`, `alias` and
    `previous_version` (where it pointed), with `version` null and no `files`: whoever follows that
    alias has nothing to serve (inference stops serving `previous_version` until the alias is set
    again).
    """

    model: str | None = Field(None, description="The registry model; promotions of other models are ignored.")
    version: int | None = Field(
        ge=1, description="The registry's version number; null when the alias was deleted (`previous_version`)."
    )
    alias: str | None = None
    previous_version: int | None = Field(None, ge=1, description="Where the alias pointed before, if anywhere.")
    files: list[str] = Field(default_factory=list)
    path: str | None = Field(None, min_length=1, description="A Hugging Face folder (or .gguf) to serve instead.")

    @model_validator(mode="after")
    def _model_or_path(self) -> ModelPromoted:
        if self.model is None and self.path is None:
            raise ValueError("a promotion names `model`, `path` or both")
        if self.version is None and (self.model is None or self.alias is None or self.previous_version is None):
            raise ValueError("a deleted alias (`version` null) names `model`, `alias` and `previous_version`")
        return self

    @property
    def deleted(self) -> bool:
        """Whether the alias was deleted rather than moved."""
        return self.version is None


class PromptUpdated(Payload):
    """`prompt.updated`: a prompt changed; caches of its compiled versions must drop it."""

    name: str = Field(description="The prompt's name.")
    action: str | None = Field(None, description="`prompt.created`, `version.created`, `label.moved`, ...")
    version: int | None = Field(None, ge=1, description="The version created or labelled, if any.")
    labels: dict[str, int] = Field(default_factory=dict, description="Every label's version after the change.")


class RailViolation(Payload):
    """One failed rail of a guard check: kinds and counts, never the text."""

    rail: str
    action: str = Field(description="`block`, `redact` or `flag`.")
    score: float = Field(description="The rail's score; it failed at or above its threshold.")
    kinds: dict[str, int] = Field(default_factory=dict, description="Finding kind -> how many.")


class GuardViolation(Payload):
    """`guard.violation`: a check found something; what failed, never the text checked."""

    direction: str = Field(description="`input` or `output`.")
    request_id: str | None = None
    allowed: bool = Field(description="Whether the text went on (redacted or flagged) rather than being refused.")
    blocked_by: list[str] = Field(default_factory=list, description="The rails that refused it, sorted.")
    rails: list[RailViolation]
    text_chars: int = Field(ge=0, description="Length of the checked text(s), in characters.")


class AlertFired(Payload):
    """An alert rule's condition held for its `for:` (monitoring/rules/*.yml); one event per alert."""

    name: str = Field(description="The rule's alert name, e.g. `AppDown`.")
    fingerprint: str = Field(description="Alertmanager's id of the alert (its labels hashed).")
    severity: str | None = Field(None, description="`page` or `ticket`.")
    app_id: str | None = Field(None, description="The app at fault, when the alert names one.")
    summary: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    generator_url: str | None = Field(None, description="The rule's expression in Prometheus' UI.")


class AlertResolved(AlertFired):
    """A fired alert's condition no longer holds."""

    ends_at: datetime


# --- Who sends what to whom ---------------------------------------------------------------------


@dataclass(frozen=True)
class TopicContract:
    """One topic's payload model (None: no payload of its own), producers and consumers (app-ids).

    `producers` empty means any caller with a sidecar may publish (a client's request by event).
    """

    topic: Topic
    payload: type[Payload] | None
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    summary: str


CONTRACTS: dict[Topic, TopicContract] = {
    c.topic: c
    for c in (
        TopicContract(
            Topic.DOCUMENTS_SUBMIT,
            DocumentSubmit,
            (),
            ("ingestion", "monitor"),
            "A document to ingest, by event: any app or client publishes it through its sidecar.",
        ),
        TopicContract(
            Topic.DOCUMENTS_INGESTED,
            DocumentIngested,
            ("ingestion",),
            ("features", "monitor"),
            "A stored document's chunks, one part per event.",
        ),
        TopicContract(
            Topic.DOCUMENTS_DELETED,
            DocumentDeleted,
            ("ingestion",),
            ("features", "monitor"),
            "A document's revision was deleted.",
        ),
        TopicContract(
            Topic.CHUNKS_INDEXED, ChunksIndexed, ("features",), ("monitor",), "A document part is searchable."
        ),
        TopicContract(
            Topic.TRAINING_REQUESTED, TrainingRequested, ("training",), ("monitor",), "A fine-tuning job started."
        ),
        TopicContract(
            Topic.TRAINING_PROGRESS, TrainingProgress, ("training",), ("monitor",), "One training step of a job."
        ),
        TopicContract(
            Topic.TRAINING_COMPLETED, TrainingCompleted, ("training",), ("monitor",), "A fine-tuning job succeeded."
        ),
        TopicContract(Topic.TRAINING_FAILED, TrainingFailed, ("training",), ("monitor",), "A fine-tuning job failed."),
        TopicContract(
            Topic.MODEL_REGISTERED, ModelRegistered, ("registry",), ("monitor",), "A model version became ready."
        ),
        TopicContract(
            Topic.MODEL_PROMOTED,
            ModelPromoted,
            ("registry",),
            ("inference", "monitor"),
            "An alias moved to another version, or was deleted (`version` null).",
        ),
        TopicContract(
            Topic.PROMPT_UPDATED, PromptUpdated, ("prompts",), ("prompts", "monitor"), "A prompt or its labels changed."
        ),
        TopicContract(
            Topic.GUARD_VIOLATION, GuardViolation, ("guard",), ("monitor",), "A guard check found a violation."
        ),
        TopicContract(
            Topic.ALERT_FIRED,
            AlertFired,
            ("monitor",),
            ("monitor",),
            "An alert started firing; the monitor turns Alertmanager's webhook into this event.",
        ),
        TopicContract(Topic.ALERT_RESOLVED, AlertResolved, ("monitor",), ("monitor",), "A fired alert stopped firing."),
        TopicContract(
            Topic.DEAD_LETTER,
            None,
            ("daprd",),
            ("monitor",),
            "A message whose delivery retries were spent, moved here by the subscriber's sidecar "
            "(the subscription's deadLetterTopic). Its data is the original message's payload, of any topic.",
        ),
    )
}
