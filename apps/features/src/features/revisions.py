"""What a `documents.ingested` or `documents.deleted` event may do, given the document's revisions.

Ingestion numbers each ingestion of a document id (the same content) with a revision: 1 first,
and after a delete one more than the revision deleted. Events arrive in any order and late
(a subscriber that was down, a redelivery), so the index decides by revision, never by arrival:
a tombstone remembers the highest revision deleted, and the index the revision it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """What the indexer does with a `documents.ingested` event (see `judge_ingested`)."""

    INDEX = "index"  # nothing indexed yet, or more parts of the revision indexed
    REPLACE = "replace"  # a newer revision: the older one's chunks go first
    DELETED = "deleted"  # this revision was deleted (or a later one): refused
    STALE = "stale"  # older than the revision indexed: refused


@dataclass(frozen=True)
class Tombstone:
    """A deleted document: the highest revision deleted, and what happened since."""

    revision: int
    chunks_removed: int = 0
    late_events_refused: int = 0

    def buried_again(self, revision: int, chunks_removed: int) -> Tombstone:
        """This tombstone after another delete: the higher revision, the removed chunks added up."""
        # Revisions only move up: a late delete of an older revision lowers nothing.
        return Tombstone(max(self.revision, revision), self.chunks_removed + chunks_removed, self.late_events_refused)

    def refused_one(self) -> Tombstone:
        """This tombstone after refusing one more late event."""
        return Tombstone(self.revision, self.chunks_removed, self.late_events_refused + 1)


def judge_ingested(revision: int, indexed: int | None, deleted: int | None) -> Verdict:
    """What to do with a `documents.ingested` of `revision`, given the revision the index holds
    for the document (None: none) and the highest revision deleted (None: never deleted)."""
    if deleted is not None and revision <= deleted:
        return Verdict.DELETED
    if indexed is None or revision == indexed:
        return Verdict.INDEX
    return Verdict.REPLACE if revision > indexed else Verdict.STALE


def delete_removes(indexed: int | None, deleted: int) -> bool:
    """Whether a delete of revision `deleted` takes the indexed chunks out: not those of a newer
    revision, which a re-ingestion indexed before this delete arrived."""
    return indexed is not None and indexed <= deleted
