"""Where synced, uploaded and pushed traces go.

Integrations fetch and normalise traces; storing them belongs to the traces app, which is
downstream. The store is wired by dotted path (``settings.IOFOLD_TRACE_STORE``) so this app
never imports downstream code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string


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
        self.errors += [(index + index_offset, reason) for index, reason in other.errors]


def store_traces(*, workspace, source: str, traces: list[dict], integration=None, on_ingested=None):
    """Upsert normalised traces through the configured store; return an ``UpsertResult``."""
    store = import_string(settings.IOFOLD_TRACE_STORE)
    return store(
        workspace=workspace,
        source=source,
        integration=integration,
        traces=traces,
        on_ingested=on_ingested,
    )
