"""Read labelled traces from JSON Lines (the format of the shared benchmark data).

One trace per line: the normalised trace keys plus `label` (good, bad or neutral, as
pages word them, or the stored positive, negative), and optionally `note`, `task`,
`label_source` and `label_detail`. Only `id` and `label` are required; every other trace
key is optional.
"""

import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from traces.vocabulary import rating_for

# Keys that carry the answer; a generator must never see them.
LABEL_KEYS = ("label", "label_source", "label_detail", "task", "note")
# Metadata keys in the shared data that leak the label (see shared/data/README.md).
LEAKY_METADATA_KEYS = (
    "prompt_is_unsafe",
    "prompt_type",
    "instruction_id_list",
    "instruction_kwargs",
)


class DatasetError(ValueError):
    """A labelled-trace file is malformed; the message names the line."""

    permanent = True

    def __init__(self, message: str, *, line: int | None = None):
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


@dataclass(frozen=True)
class LabelledExample:
    trace: dict  # the generator-visible trace (labels and leaky metadata removed)
    label: str  # positive, negative or neutral
    note: str = ""
    task: str | None = None
    group: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_good(self) -> bool | None:
        return {"positive": True, "negative": False}.get(self.label)


def visible_trace(row: dict) -> dict:
    """Return a copy of a row without labels, notes or label-leaking metadata."""
    trace = {key: value for key, value in row.items() if key not in LABEL_KEYS}
    metadata = trace.get("metadata")
    if isinstance(metadata, dict):
        trace["metadata"] = {k: v for k, v in metadata.items() if k not in LEAKY_METADATA_KEYS}
    return trace


def _dig(row: dict, dotted: str) -> object:
    value: object = row
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _parse(number: int, text: str, *, group_key: str | None) -> LabelledExample:
    try:
        row = json.loads(text)
    except ValueError as exc:
        raise DatasetError(f"invalid JSON ({exc})", line=number) from None
    if not isinstance(row, dict):
        raise DatasetError(f"expected a JSON object, got {type(row).__name__}", line=number)
    trace_id = row.get("id")
    if not isinstance(trace_id, str) or not trace_id:
        raise DatasetError("missing field 'id' (a non-empty string)", line=number)
    if "label" not in row:
        raise DatasetError(f"trace {trace_id!r}: missing field 'label'", line=number)
    label = rating_for(row["label"])
    if label is None:
        raise DatasetError(
            f"trace {trace_id!r}: label {row['label']!r} is not one of good, bad, neutral "
            "(or positive, negative)",
            line=number,
        )
    for key, kind in (("steps", list), ("metadata", dict), ("tags", list)):
        if row.get(key) is not None and not isinstance(row[key], kind):
            raise DatasetError(
                f"trace {trace_id!r}: field {key!r} must be a {kind.__name__}",
                line=number,
            )
    for position, step in enumerate(row.get("steps") or []):
        if not isinstance(step, dict):
            raise DatasetError(f"trace {trace_id!r}: step {position} is not an object", line=number)
    note = row.get("note") or ""
    if not isinstance(note, str):
        raise DatasetError(f"trace {trace_id!r}: field 'note' must be a string", line=number)
    task = row.get("task")
    group = _dig(row, group_key) if group_key else None
    return LabelledExample(
        trace=visible_trace(row),
        label=label,
        note=note,
        task=task if isinstance(task, str) else None,
        group=str(group) if group is not None else trace_id,
        raw=row,
    )


def _lines(source: str | os.PathLike | IO[str]) -> Iterable[str]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as handle:
            yield from handle
    elif isinstance(source, io.TextIOBase) or hasattr(source, "read"):
        yield from source
    else:
        raise DatasetError(f"cannot read labelled traces from {type(source).__name__}")


def read_labelled_jsonl(
    source: str | os.PathLike | IO[str],
    *,
    task: str | None = None,
    group_key: str | None = None,
) -> list[LabelledExample]:
    """Return the labelled examples in a JSON Lines file or text stream.

    `task` keeps only rows of that task; `group_key` (a dotted path such as
    "metadata.source_id") sets each example's split group, which defaults to its id.
    Blank lines are skipped. Raises DatasetError naming the first bad line, and on
    duplicate ids within one task.
    """
    examples: list[LabelledExample] = []
    seen: dict[tuple[str | None, str], int] = {}
    try:
        for number, text in enumerate(_lines(source), start=1):
            if not text.strip():
                continue
            example = _parse(number, text, group_key=group_key)
            if task is not None and example.task != task:
                continue
            key = (example.task, example.trace["id"])
            if key in seen:
                raise DatasetError(
                    f"duplicate trace id {example.trace['id']!r} (first on line {seen[key]})",
                    line=number,
                )
            seen[key] = number
            examples.append(example)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"file is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise DatasetError(f"cannot read labelled traces: {exc.strerror or exc}") from None
    return examples
