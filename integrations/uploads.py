"""Traces without Langfuse: JSONL uploads and API batches, validated line by line."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integrations.adapters.langfuse import normalise_langfuse_export
from integrations.constants import MAX_LINE_BYTES, MAX_REPORTED_ERRORS, UPLOAD_BATCH
from integrations.models import UploadRun
from integrations.store import UpsertResult
from iofold.lib import jsontext
from iofold.lib.runs import keep_alive
from iofold.lib.tasks import enqueue
from iofold.pipeline import ingest_traces

logger = logging.getLogger(__name__)

UPLOAD_TASK = "integrations.tasks.ingest_upload_task"
# A running upload no worker has touched for this long is failed (its heartbeat moves
# every few seconds; a dead worker's upload is taken over at once).
UPLOAD_STALE_AFTER = timedelta(minutes=10)


@dataclass
class IngestReport:
    """Counts of an upload or API batch and the rejected lines with their reasons."""

    result: UpsertResult = field(default_factory=UpsertResult)
    lines: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    errors_total: int = 0

    def reject(self, line: int, reason: str) -> None:
        # A batch's lines are checked when it is stored, after later lines that did not
        # decode were refused: keep the first lines of the file, not the first refusals.
        self.errors_total += 1
        self.errors.append((line, reason))
        if len(self.errors) > MAX_REPORTED_ERRORS:
            self.errors.remove(max(self.errors))

    @property
    def accepted(self) -> int:
        return self.result.created + self.result.updated + self.result.unchanged

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.lines,
            "created": self.result.created,
            "updated": self.result.updated,
            "unchanged": self.result.unchanged + self.result.duplicates,
            "failed": self.errors_total,
            "errors": [{"line": line, "error": reason} for line, reason in sorted(self.errors)],
            "errors_truncated": self.errors_total > len(self.errors),
        }


def is_langfuse_export(obj: dict[str, Any]) -> bool:
    """Tell a Langfuse trace export line from a normalised trace."""
    return "steps" not in obj and ("observations" in obj or "projectId" in obj)


def to_normalised(obj: Any) -> dict[str, Any]:
    """Return the normalised trace for one decoded line (either accepted shape)."""
    if isinstance(obj, dict) and is_langfuse_export(obj):
        return normalise_langfuse_export(obj)
    return obj


def ingest_objects(
    *, workspace, source: str, items: Iterable[tuple[int, Any]], on_ingested=None
) -> IngestReport:
    """Validate and upsert ``(line number, decoded object)`` pairs in batches."""
    report = IngestReport()
    batch: list[dict[str, Any]] = []
    numbers: list[int] = []

    def flush() -> None:
        result = ingest_traces(
            workspace=workspace, source=source, traces=batch, on_ingested=on_ingested
        )
        for index, reason in result.errors:
            report.reject(numbers[index], reason)
        result.errors = []
        report.result.merge(result)
        batch.clear()
        numbers.clear()

    for number, obj in items:
        report.lines += 1
        if isinstance(obj, Exception):
            report.reject(number, str(obj))
            continue
        try:
            trace = to_normalised(obj)
        except (ValueError, TypeError, KeyError) as exc:
            report.reject(number, f"not a valid Langfuse trace export: {exc}")
            continue
        batch.append(trace)
        numbers.append(number)
        if len(batch) >= UPLOAD_BATCH:
            flush()
    if batch:
        flush()
    report.result.failed = report.errors_total
    return report


def decode_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, object or the Exception that explains why it is bad)``."""
    for number, raw in enumerate(lines, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield (
                number,
                ValueError(
                    f"line is {len(raw) // 1024} KiB; the limit is {MAX_LINE_BYTES >> 20} MiB"
                ),
            )
            continue
        text = raw.strip()
        if not text:
            continue
        try:
            obj = jsontext.loads(text)
        except UnicodeDecodeError:
            yield number, ValueError("line is not UTF-8 text")
            continue
        except jsontext.UnsafeJSON as exc:
            yield number, ValueError(str(exc))
            continue
        except ValueError as exc:
            yield number, ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            yield number, ValueError("a line must be one JSON object (a trace)")
            continue
        yield number, obj


def ingest_jsonl(*, workspace, lines: Iterable[bytes], on_ingested=None) -> IngestReport:
    """Ingest an uploaded JSONL file; bad lines are reported, good lines kept."""
    return ingest_objects(
        workspace=workspace, source="upload", items=decode_lines(lines), on_ingested=on_ingested
    )


def count_lines(uploaded) -> int:
    """Count the non-blank lines of an uploaded file (the traces the ingest budget counts)."""
    uploaded.seek(0)
    count = sum(1 for raw in uploaded if raw.strip())
    uploaded.seek(0)
    return count


# --- uploads accepted at once, ingested by a worker ------------------------------------------


def upload_dir() -> Path:
    return Path(settings.VAR_DIR) / "uploads"


def start_upload(*, workspace, uploaded) -> UploadRun:
    """Store an uploaded file where the workers can read it and queue its ingestion."""
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{workspace.pk}-{uuid.uuid4().hex}.jsonl"
    with path.open("wb") as out:
        for piece in uploaded.chunks():
            out.write(piece)
    with transaction.atomic():
        run = UploadRun.objects.create(
            workspace=workspace,
            filename=(uploaded.name or "upload.jsonl")[:255],
            path=str(path),
            size=path.stat().st_size,
        )
        transaction.on_commit(lambda: enqueue(UPLOAD_TASK, run.pk))
    logger.info("upload queued run=%s bytes=%d", run.pk, run.size)
    return run


class _Counting:
    """Iterate a file's lines, counting the bytes read for the progress bar."""

    def __init__(self, file) -> None:
        self.file, self.read = file, 0

    def __iter__(self):
        for line in self.file:
            self.read += len(line)
            yield line


def execute_upload(*, run_id: int) -> UploadRun | None:
    """Ingest a queued upload's file, recording progress, then its report; delete the file.

    Safe to call again: a run claimed by a live worker or finished is left alone, and a
    taken-over run ingests the whole file again (ingestion is an idempotent upsert).
    """
    if UploadRun.objects.claim(run_id) is None:
        return UploadRun.objects.filter(pk=run_id).first()
    run = UploadRun.objects.select_related("workspace").get(pk=run_id)
    path = Path(run.path)
    if not path.exists():
        UploadRun.objects.filter(pk=run.pk).fail("The uploaded file is gone; upload it again.")
        return None
    with keep_alive(run), path.open("rb") as file:
        lines = _Counting(file)

        def progress(_trace_ids) -> None:
            UploadRun.objects.filter(pk=run.pk, owner=run.owner).update(
                bytes_done=lines.read, heartbeat_at=timezone.now()
            )

        report = ingest_jsonl(workspace=run.workspace, lines=lines, on_ingested=progress)
    finished = UploadRun.objects.filter(
        pk=run.pk, status=UploadRun.Status.RUNNING, owner=run.owner
    ).update(
        status=UploadRun.Status.SUCCEEDED,
        report={**report.as_dict(), "accepted": report.accepted},
        bytes_done=run.size,
        finished_at=timezone.now(),
    )
    if finished:
        path.unlink(missing_ok=True)
    run.refresh_from_db()
    logger.info("upload ingested run=%s lines=%d", run.pk, report.lines)
    return run


def recover_uploads(*, include_queued: bool = False) -> int:
    """Enqueue again the uploads whose worker died."""
    return UploadRun.objects.recover(
        enqueue=lambda run: enqueue(UPLOAD_TASK, run.pk), include_queued=include_queued
    )


def reap_stale_uploads(*, older_than: timedelta = UPLOAD_STALE_AFTER) -> int:
    """Fail uploads no worker has touched for ``older_than``; delete their files."""
    cutoff = timezone.now() - older_than
    stale = UploadRun.objects.filter(status=UploadRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    return stale.fail("The worker stopped responding; upload the file again.")
