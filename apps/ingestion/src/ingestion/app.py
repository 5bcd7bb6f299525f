"""Takes documents in, cleans, deduplicates and chunks them, and publishes them."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from genai_platform.contracts.documents import MULTIPART_FRAMING_BYTES
from genai_platform.service import create_service
from ingestion.chunking import Chunker, ChunkingPolicy, TokenCounter
from ingestion.documents import DocumentStore
from ingestion.inbox import InboxSweeper
from ingestion.pipeline import Ingestor
from ingestion.routes import dapr_routes, documents, subscriptions
from ingestion.settings import IngestionSettings


def create_app(settings: IngestionSettings) -> FastAPI:
    """The ingestion app: the documents API, the `documents.submit` subscription and the inbox sweep binding."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.tokenizer_file is not None  # the settings refuse to start without one
        tokens = TokenCounter(settings.tokenizer_file)
        chunker = Chunker(tokens.offsets, ChunkingPolicy(settings.chunk_tokens, settings.chunk_overlap))
        app.state.store = DocumentStore(app.state.sidecar)
        app.state.ingestor = Ingestor(
            app.state.sidecar,
            app.state.store,
            chunker,
            chunks_per_event=settings.chunks_per_event,
            app_id=settings.app_id,
        )
        app.state.inbox = InboxSweeper(settings.inbox_dir, app.state.ingestor, max_bytes=settings.max_document_bytes)
        yield

    return create_service(
        settings,
        title="Ingestion",
        description=__doc__,
        routers=[documents, dapr_routes, subscriptions.router],
        lifespan=lifespan,
        # The largest document and its framing, the figure create_document refuses "before reading":
        # the body rule (genai_platform.text) reads a body before the route, so it refuses it first.
        max_body_bytes=settings.max_document_bytes + MULTIPART_FRAMING_BYTES,
    )
