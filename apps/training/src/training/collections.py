"""Training data from a collection of ingested documents, read from the ingestion service."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from genai_platform.dapr import Sidecar
from training.datasets import ChatDataset, examples_from_chunks
from training.errors import CollectionChanged, DependencyUnavailable, EmptyCollection
from training.models import FileObject
from training.store import TrainingStore, new_id

PAGE = 500


async def collection_dataset(sidecar: Sidecar, ingestion_app_id: str, collection: str) -> ChatDataset:
    """Every chunk of every document in `collection` as chat examples.

    Raises EmptyCollection when there is none, CollectionChanged when a document goes while it is
    read, DependencyUnavailable when ingestion does not answer.
    """
    chunks: list[dict[str, Any]] = []
    offset = 0
    while True:
        listing = await _get(sidecar, ingestion_app_id, "v1/documents", {"collection": collection, "offset": offset})
        for summary in listing["documents"]:
            document = await _get(sidecar, ingestion_app_id, f"v1/documents/{summary['id']}", {"chunks": "true"})
            chunks.extend({**chunk, "title": document.get("title")} for chunk in document.get("chunks", []))
        offset += len(listing["documents"])
        if not listing["documents"] or offset >= listing["total"]:
            break
    dataset = examples_from_chunks(chunks)
    if not dataset.examples:
        raise EmptyCollection(f"The collection '{collection}' holds no ingested text to train on.")
    return dataset


async def _get(sidecar: Sidecar, app_id: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    query = urlencode({**params, "limit": PAGE})
    response = await sidecar.invoke(app_id, f"{path}?{query}", method="GET")
    if response.status_code == 404:
        raise CollectionChanged("A document of the collection disappeared while it was read; try again.")
    if response.status_code >= 400:
        raise DependencyUnavailable("The ingestion service did not answer; try again.")
    return response.json()


async def snapshot_collection(
    sidecar: Sidecar, ingestion_app_id: str, store: TrainingStore, collection: str, *, file_id: str | None = None
) -> FileObject:
    """Freeze a collection's examples as a training file (its sha256 is the dataset snapshot id)."""
    dataset = await collection_dataset(sidecar, ingestion_app_id, collection)
    jsonl = dataset.to_jsonl().encode()
    return await store.create_file(
        f"collection-{collection}.jsonl", len(jsonl), dataset, file_id=file_id or new_id("file")
    )
