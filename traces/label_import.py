"""Labels a team already has: a JSONL upload into an eval set, and scores or feedback on
synced traces (Langfuse, LangSmith) mapped to good/bad/neutral."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from integrations.uploads import IngestReport, decode_lines, ingest_objects
from traces import services
from traces.exceptions import TraceError
from traces.models import EvalSet, Feedback, Trace

# What a `label` field may say; anything else rejects the line.
LABEL_WORDS = {
    "good": "positive",
    "positive": "positive",
    "bad": "negative",
    "negative": "negative",
    "neutral": "neutral",
    True: "positive",
    False: "negative",
}


def rating_for(value: Any) -> str | None:
    """The rating a label value names, or None when it names none."""
    if isinstance(value, bool):
        return LABEL_WORDS[value]
    if isinstance(value, str):
        return LABEL_WORDS.get(value.strip().lower())
    return None


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
            .filter(source_key="upload", external_id__in=ids)
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
) -> tuple[int, list[tuple[Any, str]]]:
    labelled, skipped = 0, []
    for external_id, rating, note in labels:
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


def score_sources(workspace) -> list:
    """The workspace's integrations whose scores or feedback can become labels."""
    from integrations.adapters import ADAPTERS, get_adapter_class
    from integrations.models import Integration

    kinds = [k for k in ADAPTERS if get_adapter_class(k).capabilities.read_scores]
    return list(Integration.objects.for_workspace(workspace).filter(kind__in=kinds))


def import_source_scores(
    *, eval_set: EvalSet, integration, user, score_name: str, mapping: str
) -> ScoreImportReport:
    """Turn the scores named ``score_name`` on the set's traces from ``integration`` (Langfuse
    scores, LangSmith feedback) into ``user``'s labels, mapped value by value.

    Raises ``TraceError`` for bad input and ``AdapterError`` when the source fails; nothing
    is written then.
    """
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
    with transaction.atomic():
        report.labelled, report.skipped = _record(eval_set, user, labels, traces, origin=origin)
    return report
