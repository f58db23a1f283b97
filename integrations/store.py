"""What storing a batch of traces did, as the integrations' entry points report it.

Integrations fetch and normalise traces; storing them belongs to the traces app, which is
downstream, so each entry point hands its batch to ``iofold.pipeline.ingest_traces``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class UpsertResult:
    """What a batch did. ``trace_ids`` are the ids of created or changed rows."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    # Later copies of the same id in one batch win; the earlier copies are counted here.
    duplicates: int = 0
    trace_ids: list[int] = field(default_factory=list)
    # Conversations an end marker in this batch completed (idle ones complete in a sweep).
    completed_conversation_ids: list[int] = field(default_factory=list)
    # (index of the trace in the batch, reason), for per-line error reports.
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.created + self.updated + self.unchanged + self.failed + self.duplicates

    def merge(self, other: UpsertResult, *, index_offset: int = 0) -> None:
        """Add ``other``'s counts to this result, shifting its error indexes."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.failed += other.failed
        self.duplicates += other.duplicates
        self.trace_ids += other.trace_ids
        self.completed_conversation_ids += other.completed_conversation_ids
        self.errors += [(index + index_offset, reason) for index, reason in other.errors]
