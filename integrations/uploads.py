"""Traces without Langfuse: JSONL uploads and API batches, validated line by line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from integrations.adapters.langfuse import normalise_langfuse_export
from integrations.constants import MAX_LINE_BYTES, MAX_REPORTED_ERRORS, UPLOAD_BATCH
from integrations.store import UpsertResult
from iofold.lib import jsontext
from iofold.pipeline import ingest_traces


@dataclass
class IngestReport:
    """Counts of an upload or API batch and the rejected lines with their reasons."""

    result: UpsertResult = field(default_factory=UpsertResult)
    lines: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    errors_total: int = 0

    def reject(self, line: int, reason: str) -> None:
        self.errors_total += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append((line, reason))

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
            "errors": [{"line": line, "error": reason} for line, reason in self.errors],
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
