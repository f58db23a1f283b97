"""Labels a team already has: a JSONL upload into an eval set, and scores or feedback on
synced traces (Langfuse, LangSmith) mapped to good/bad/neutral."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from integrations.uploads import IngestReport, decode_lines, ingest_objects
from iofold.lib.runs import keep_alive
from iofold.lib.tasks import enqueue
from traces import services
from traces.exceptions import TraceError
from traces.models import EvalSet, Feedback, ScoreImportRun, Trace
from traces.vocabulary import rating_for

logger = logging.getLogger(__name__)


@dataclass
class LabelImportReport:
    ingest: IngestReport = field(default_factory=IngestReport)
    labelled: int = 0
    # (line number or external id, reason) for labels that were not recorded.
    skipped: list[tuple[Any, str]] = field(default_factory=list)


def _take_labels(
    items: Iterable[tuple[int, Any]], report: IngestReport
) -> tuple[list[tuple[int, Any]], dict[int, tuple[str, str, str]]]:
    """Strip `label` and `note` from each line (an eval must never see them); return the
    lines and ``{line: (external id, rating, note)}``. A line with a bad label is rejected."""
    kept: list[tuple[int, Any]] = []
    labels: dict[int, tuple[str, str, str]] = {}
    for number, obj in items:
        if isinstance(obj, dict) and ("label" in obj or "note" in obj):
            obj = dict(obj)
            raw, note = obj.pop("label", None), obj.pop("note", "")
            if raw is not None:
                rating = rating_for(raw)
                if rating is None:
                    report.lines += 1
                    report.reject(number, "field 'label' must be good, bad or neutral")
                    continue
                if not isinstance(note, str):
                    report.lines += 1
                    report.reject(number, "field 'note' must be text")
                    continue
                labels[number] = (str(obj.get("id", "")), rating, note)
        kept.append((number, obj))
    return kept, labels


def import_jsonl(*, eval_set: EvalSet, user, lines: Iterable[bytes]) -> LabelImportReport:
    """Upload traces into the set; lines with a `label` (and `note`) become ``user``'s labels.

    Hand-picked sets take in every uploaded trace; a filter set labels only the traces its
    filter matches. All of it commits together, or none of it does.
    """
    if eval_set.is_archived:
        raise TraceError("This eval set is archived; restore it to import labels.")
    out = LabelImportReport()
    with transaction.atomic():
        items, labels = _take_labels(decode_lines(lines), out.ingest)
        # The rejected lines' counts are kept; ingest_objects adds the rest to them.
        ingested = ingest_objects(workspace=eval_set.workspace, source="upload", items=items)
        ingested.lines += out.ingest.lines
        ingested.errors_total += out.ingest.errors_total
        ingested.errors = sorted(out.ingest.errors + ingested.errors)
        ingested.result.failed = ingested.errors_total
        out.ingest = ingested
        failed = {line for line, _ in ingested.errors}
        ids = [obj["id"] for number, obj in items if isinstance(obj, dict) and number not in failed]
        ids = [i for i in ids if isinstance(i, str)]
        traces = {
            t.external_id: t
            for t in Trace.objects.for_workspace(eval_set.workspace_id)
            .with_keys("upload", ids)
            .only("id", "workspace_id", "external_id")
        }
        if eval_set.source_kind == EvalSet.SourceKind.MANUAL and traces:
            services.add_traces_to_eval_set(
                eval_set=eval_set, trace_ids=[t.pk for t in traces.values()]
            )
        out.labelled, out.skipped = _record(
            eval_set,
            user,
            [(ext, rating, note) for n, (ext, rating, note) in labels.items() if n not in failed],
            traces,
            origin=Feedback.Origin.UPLOAD,
        )
    return out


def _record(
    eval_set: EvalSet,
    user,
    labels: list[tuple[str, str, str]],
    traces: Mapping[str, Trace],
    *,
    origin: str,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[int, list[tuple[Any, str]]]:
    labelled, skipped = 0, []
    for index, (external_id, rating, note) in enumerate(labels, start=1):
        if on_progress is not None and index % PROGRESS_EVERY == 0:
            on_progress(index)
        trace = traces.get(external_id)
        if trace is None:
            skipped.append((external_id, "no such trace"))
            continue
        try:
            services.record_feedback(
                eval_set=eval_set, trace=trace, user=user, rating=rating, note=note, origin=origin
            )
        except TraceError as exc:
            skipped.append((external_id, exc.message))
            continue
        labelled += 1
    return labelled, skipped


# --- scores and feedback on synced traces --------------------------------------------------

DEFAULT_MAPPING = "true=good, false=bad"
# Traces per import: one eval set's traces from one source, read in batches by the adapter.
MAX_SCORED_TRACES = 5_000
MAX_REPORTED_SKIPS = 50
# A running import records its progress (and so its heartbeat) every this many labels.
PROGRESS_EVERY = 100
SCORE_IMPORT_TASK = "traces.tasks.import_scores_task"
# A running import no worker has touched for this long is failed (its heartbeat moves
# every few seconds; a dead worker's import is taken over at once).
SCORE_IMPORT_STALE_AFTER = timedelta(minutes=10)


def value_key(value: Any) -> str:
    """How a score value is written in a mapping: true/false, 1 or 0.5, or the category."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value).strip().lower()


def parse_mapping(text: str) -> dict[str, str]:
    """Parse ``"value=label, value=label"`` into ``{value key: rating}``; raise on a bad pair."""
    mapping: dict[str, str] = {}
    for part in (text or "").replace("\n", ",").split(","):
        if not part.strip():
            continue
        value, sep, label = part.partition("=")
        rating = rating_for(label)
        if not sep or not value.strip() or rating is None:
            raise TraceError(
                f"“{part.strip()}” is not value=label; labels are good, bad or neutral "
                "(for example: true=good, false=bad)."
            )
        mapping[value.strip().lower()] = rating
    if not mapping:
        raise TraceError("Say which score values mean good and bad, e.g. true=good, false=bad.")
    return mapping


@dataclass
class ScoreImportReport:
    scores: int = 0
    labelled: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)  # value key -> how many
    skipped: list[tuple[Any, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scores": self.scores,
            "labelled": self.labelled,
            "unmapped": self.unmapped,
            "skipped": [[str(ext), reason] for ext, reason in self.skipped[:MAX_REPORTED_SKIPS]],
            "skipped_total": len(self.skipped),
        }


def score_sources(workspace) -> list:
    """The workspace's integrations whose scores or feedback can become labels."""
    from integrations.adapters import ADAPTERS, get_adapter_class
    from integrations.models import Integration

    kinds = [k for k in ADAPTERS if get_adapter_class(k).capabilities.read_scores]
    # Not one being deleted: its traces stay, but nothing is read through it any more.
    return list(Integration.objects.for_workspace(workspace).present().filter(kind__in=kinds))


def _checked(eval_set: EvalSet, integration, score_name: str, mapping: str):
    """Return ``(score name, ratings, adapter)``; raise ``TraceError`` for bad input."""
    from integrations.services import get_adapter

    if eval_set.is_archived:
        raise TraceError("This eval set is archived; restore it to import labels.")
    score_name = (score_name or "").strip()
    if not score_name:
        raise TraceError("Name the score to import.")
    ratings = parse_mapping(mapping)
    adapter = get_adapter(integration)
    if not adapter.capabilities.read_scores:
        raise TraceError(f"{integration.get_kind_display()} has no scores iofold can read.")
    return score_name, ratings, adapter


def import_source_scores(
    *,
    eval_set: EvalSet,
    integration,
    user,
    score_name: str,
    mapping: str,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ScoreImportReport:
    """Turn the scores named ``score_name`` on the set's traces from ``integration`` (Langfuse
    scores, LangSmith feedback) into ``user``'s labels, mapped value by value.

    Raises ``TraceError`` for bad input and ``AdapterError`` when the source fails; nothing
    is written then.
    """
    score_name, ratings, adapter = _checked(eval_set, integration, score_name, mapping)
    traces = {
        t.external_id: t
        for t in Trace.objects.in_eval_set(eval_set)
        .filter(integration=integration)
        .only("id", "workspace_id", "external_id")[:MAX_SCORED_TRACES]
    }
    report = ScoreImportReport()
    if not traces:
        return report
    scores = adapter.fetch_scores(name=score_name, trace_ids=list(traces))
    report.scores = len(scores)
    labels = []
    for score in scores:
        key = value_key(score.value)
        if key not in ratings:
            report.unmapped[key] = report.unmapped.get(key, 0) + 1
            continue
        labels.append((score.trace_id, ratings[key], score.comment))
    origin = (
        Feedback.Origin.LANGSMITH if integration.kind == "langsmith" else Feedback.Origin.LANGFUSE
    )
    if on_total is not None:
        on_total(len(labels))
    with transaction.atomic():
        report.labelled, report.skipped = _record(
            eval_set, user, labels, traces, origin=origin, on_progress=on_progress
        )
    return report


# --- the same, on a worker -------------------------------------------------------------------


def start_score_import(
    *, eval_set: EvalSet, integration, user, score_name: str, mapping: str
) -> ScoreImportRun:
    """Check the request and queue the import; raise ``TraceError`` (nothing queued) when
    the input is bad, so a typo in the mapping is told at once, not after a worker ran.

    The same import still queued or running is returned instead of queued again (a double
    click, a retried request).
    """
    score_name, _ratings, _adapter = _checked(eval_set, integration, score_name, mapping)
    with transaction.atomic():
        # Two requests at once: the second waits here and finds the first's run.
        EvalSet.objects.select_for_update().filter(pk=eval_set.pk).first()
        same = ScoreImportRun.objects.for_workspace(eval_set.workspace).filter(
            eval_set=eval_set, integration=integration, score_name=score_name, mapping=mapping
        )
        if (active := same.unfinished().first()) is not None:
            return active
        run = ScoreImportRun.objects.create(
            workspace=eval_set.workspace,
            eval_set=eval_set,
            integration=integration,
            user=user,
            score_name=score_name,
            mapping=mapping,
        )
        transaction.on_commit(lambda: enqueue(SCORE_IMPORT_TASK, run.pk))
    logger.info("score import queued run=%s eval_set=%s", run.pk, eval_set.pk)
    return run


def execute_score_import(*, run_id: int) -> ScoreImportRun | None:
    """Carry out a queued import, recording progress, then its report or its error.

    Safe to call again: a run claimed by a live worker or finished is left alone, and a
    taken-over run imports again (recording a label is an upsert).
    """
    from integrations.adapters.base import AdapterError

    if ScoreImportRun.objects.claim(run_id) is None:
        return ScoreImportRun.objects.filter(pk=run_id).first()
    run = ScoreImportRun.objects.select_related("eval_set", "integration", "user").get(pk=run_id)
    mine = ScoreImportRun.objects.filter(pk=run.pk, owner=run.owner)

    def on_total(total: int) -> None:
        mine.update(total=total, done=0, heartbeat_at=timezone.now())

    def on_progress(done: int) -> None:
        # Inside the import's transaction on PostgreSQL this is seen only at commit; the
        # heartbeat thread keeps the run alive meanwhile.
        mine.update(done=done, heartbeat_at=timezone.now())

    try:
        with keep_alive(run):
            report = import_source_scores(
                eval_set=run.eval_set,
                integration=run.integration,
                user=run.user,
                score_name=run.score_name,
                mapping=run.mapping,
                on_total=on_total,
                on_progress=on_progress,
            )
    except TraceError as exc:
        mine.fail(exc.message)
    except AdapterError as exc:
        mine.fail(f"{run.integration.name} could not be read: {exc}")
    else:
        mine.filter(status=ScoreImportRun.Status.RUNNING).update(
            status=ScoreImportRun.Status.SUCCEEDED,
            report=report.as_dict(),
            done=report.labelled,
            finished_at=timezone.now(),
        )
        logger.info("score import done run=%s labelled=%d", run.pk, report.labelled)
    run.refresh_from_db()
    return run


def recover_score_imports(*, include_queued: bool = False) -> int:
    """Enqueue again the score imports whose worker died."""
    return ScoreImportRun.objects.recover(
        enqueue=lambda run: enqueue(SCORE_IMPORT_TASK, run.pk), include_queued=include_queued
    )


def reap_stale_score_imports(*, older_than: timedelta = SCORE_IMPORT_STALE_AFTER) -> int:
    """Fail score imports no worker has touched for ``older_than``."""
    return (
        ScoreImportRun.objects.filter(status=ScoreImportRun.Status.RUNNING)
        .stale(older_than=older_than)
        .fail("The worker stopped responding; import the scores again.")
    )
