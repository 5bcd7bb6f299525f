"""The progress file a worker appends to and the supervisor reads: one JSON object per line.

A file, not a pipe: it outlives both processes, so an app restarted after a crash reads on
from the offset it had reached, and a worker restarted after a crash appends to it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# What a worker reports, in order: started, (eval), step..., checkpoint..., (eval), exported, completed | failed.
KINDS = frozenset({"started", "resumed", "step", "checkpoint", "eval", "exported", "completed", "failed", "log"})


def encode_record(kind: str, **fields: Any) -> bytes:
    """One progress record as a JSON line: `type`, Unix `time` in seconds (ms precision) and `fields`.

    Raises ValueError for a kind not in KINDS.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown progress record kind {kind!r}")
    return (json.dumps({"type": kind, "time": round(time.time(), 3), **fields}, separators=(",", ":")) + "\n").encode()


def decode_records(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The complete records in `data`, and how many bytes they took.

    A line without its newline is a record still being written: it is left for the next read.
    A line that is not a known record (a torn write after a crash) is skipped.
    """
    records: list[dict[str, Any]] = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(record, dict) and record.get("type") in KINDS:
            records.append(record)
    return records, end


class ProgressWriter:
    """Appends records with one write each, flushed, so a crash leaves at most a torn last line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        # A torn line from a killed predecessor would glue onto the next record: end it first.
        size = os.fstat(self._fd).st_size
        if size:
            with path.open("rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record (see `encode_record`) in a single write."""
        os.write(self._fd, encode_record(kind, **fields))

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def read_records(path: Path, offset: int, limit: int = 1 << 20) -> tuple[list[dict[str, Any]], int]:
    """Records after byte `offset` of the file (at most `limit` bytes' worth), and the new offset."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read(limit)
    except FileNotFoundError:
        return [], offset
    records, used = decode_records(data)
    return records, offset + used
