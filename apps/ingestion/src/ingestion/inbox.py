"""The inbox folder: files dropped there are ingested once, then moved out of the way."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from genai_platform.dapr import DaprError
from ingestion.documents import DocumentMeta
from ingestion.extract import DocumentTooLarge, UnreadableDocument, UnsupportedFormat
from ingestion.pipeline import DocumentInOtherCollection, Ingestor

log = logging.getLogger(__name__)

DONE = ".done"
FAILED = ".failed"


class InboxSweeper:
    """Ingests every file in `inbox` and moves it to `.done/` or `.failed/` (with a note why).

    A file is moved only after its document is stored and published, so a crash in between
    leaves it in the inbox: the next sweep ingests it again, and the content-hash id makes that
    a no-op. Files still being written are left for a later sweep (see `_settled`).
    """

    def __init__(self, inbox: Path, ingestor: Ingestor, *, max_bytes: int, collection: str = "inbox") -> None:
        self.inbox = inbox
        self._ingestor = ingestor
        self._max_bytes = max_bytes
        self._collection = collection
        self._task: asyncio.Task[int] | None = None
        self._sizes: dict[Path, int] = {}

    def start_sweep(self) -> bool:
        """Start a sweep unless one is running; True when one was started."""
        if self._task is not None and not self._task.done():
            return False
        self._task = asyncio.create_task(self.sweep(), name="inbox-sweep")
        return True

    async def sweep(self) -> int:
        """Ingest what is in the inbox now; the number of files handled."""
        try:
            files = await asyncio.to_thread(self._files)
        except OSError:
            log.warning("inbox unreadable", extra={"inbox": str(self.inbox)}, exc_info=True)
            return 0
        handled = 0
        for path in files:
            if not self._settled(path):
                continue
            try:
                await self._ingest(path)
                handled += 1
            except DaprError:
                # The store or broker is away: leave the file for the next sweep.
                log.warning("inbox: sidecar unavailable; will retry", extra={"file": path.name}, exc_info=True)
                return handled
            except Exception:
                log.exception("inbox: unexpected error", extra={"file": path.name})
                await asyncio.to_thread(self._move, path, FAILED, "unexpected error; see the service log")
        return handled

    def _files(self) -> list[Path]:
        self.inbox.mkdir(parents=True, exist_ok=True)
        return sorted(p for p in self.inbox.iterdir() if p.is_file() and not p.name.startswith("."))

    def _settled(self, path: Path) -> bool:
        # A file whose size changed since the last sweep may still be being copied in. Writers
        # that can should write elsewhere and rename into the inbox (atomic); this guards the rest.
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        previous = self._sizes.get(path)
        self._sizes[path] = size
        return previous == size or size > 0 and previous is None and _old_enough(path)

    async def _ingest(self, path: Path) -> None:
        if (await asyncio.to_thread(path.stat)).st_size > self._max_bytes:
            await asyncio.to_thread(self._move, path, FAILED, f"larger than {self._max_bytes} bytes")
            return
        data = await asyncio.to_thread(path.read_bytes)
        meta = DocumentMeta(source=f"inbox:{path.name}", collection=self._collection)
        try:
            result = await self._ingestor.ingest_bytes(data, meta, filename=path.name)
        except (DocumentTooLarge, UnsupportedFormat, UnreadableDocument) as error:
            await asyncio.to_thread(self._move, path, FAILED, str(error))
            return
        except DocumentInOtherCollection as error:
            await asyncio.to_thread(self._move, path, FAILED, error.detail)
            return
        log.info("inbox: ingested", extra={"file": path.name, "document_id": result.document.id})
        await asyncio.to_thread(self._move, path, DONE, None)

    def _move(self, path: Path, folder: str, reason: str | None) -> None:
        target_dir = self.inbox / folder
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        path.replace(target)
        self._sizes.pop(path, None)
        if reason is not None:
            target.with_name(target.name + ".reason.txt").write_text(reason + "\n")


def _old_enough(path: Path, seconds: float = 2.0) -> bool:
    import time

    return time.time() - path.stat().st_mtime >= seconds
