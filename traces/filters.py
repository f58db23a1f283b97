"""The trace filters shared by the trace list, the API and eval sets' saved filters."""

import datetime as dt
import json
from dataclasses import asdict, dataclass, fields

from django.db import connection
from django.utils import timezone

from iofold.lib.fields import parse_id
from iofold.lib.text import has_nul, search_form
from traces.constants import TraceSource

LABEL_STATES = ("labelled", "unlabelled")


def _parse_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def parse_date(value) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    # Spaces around it (a "+" in a query string) are no part of it, as for the text filters.
    value = str(value or "").strip()
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def day_after(day: dt.date) -> dt.date | None:
    """Return the day after ``day``, where a filter "to ``day``" (inclusive) ends; None
    after 9999-12-31, the last day a date holds (``day + 1`` raised OverflowError: a 500),
    so no time is past the filter's end."""
    return None if day == dt.date.max else day + dt.timedelta(days=1)


def not_read(given, takes: str) -> str:
    """Say why a filter's value was not read: what it takes (shown on pages, sent in 400s)."""
    return f"{str(given)[:40]!r} is not {takes}."


def _sources() -> list[str]:
    return TraceSource.values


# What each filter that parses its value takes, said to an API caller who sent another.
_TAKES = {
    "has_error": "true or false",
    "label": " or ".join(LABEL_STATES),
    "integration": "an integration id",
    "date_from": "a date (YYYY-MM-DD)",
    "date_to": "a date (YYYY-MM-DD)",
}


@dataclass(frozen=True)
class TraceFilters:
    """Filters of the trace list; values that don't parse are dropped (``unread`` names them)."""

    q: str = ""
    name: str = ""
    tag: str = ""
    has_error: bool | None = None
    label: str = ""
    source: str = ""
    integration: int | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    @classmethod
    def from_data(cls, data, *, keep_unknown_source: bool = False) -> "TraceFilters":
        """Build from a query dict, a saved-filter dict or serializer data.

        A source that is not one of ``Trace.Source`` is dropped like any unreadable value,
        unless ``keep_unknown_source``: an eval set's stored filter on a source that no
        longer exists must match no trace, not every trace.
        """
        data = data or {}
        get = data.get

        def text(key: str, longest: int) -> str:
            value = (get(key) or "").strip()[:longest]
            return "" if has_nul(value) else value

        label = text("label", 20)
        source = text("source", 20)
        return cls(
            q=text("q", 200),
            name=text("name", 255),
            tag=text("tag", 100),
            has_error=_parse_bool(get("has_error")),
            label=label if label in LABEL_STATES else "",
            source=source if keep_unknown_source or source in _sources() else "",
            integration=parse_id(get("integration")),
            date_from=parse_date(get("date_from")),
            date_to=parse_date(get("date_to")),
        )

    def unread(self, data) -> dict[str, str]:
        """Return, for each filter ``data`` gives a value this did not read, what it takes.

        The list pages drop such values; the API answers 400 with these instead, since a
        dropped filter lists traces its caller did not ask for.
        """
        unread = {}
        takes_source = "a source of traces (" + ", ".join(_sources()) + ")"
        for key, takes in {**_TAKES, "source": takes_source}.items():
            given = str((data or {}).get(key) or "").strip()
            if given and getattr(self, key) in ("", None):
                unread[key] = not_read(given, takes)
        return unread

    def to_data(self) -> dict:
        """Return the non-empty filters as JSON-friendly values (saved filters, query strings)."""
        out = {}
        for key, value in asdict(self).items():
            if value in ("", None):
                continue
            if isinstance(value, dt.date):
                value = value.isoformat()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            out[key] = value
        return out

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in ("", None) for f in fields(self))

    def apply(self, qs, *, label_state: bool = True):
        """Filter a trace queryset; ``label_state=False`` ignores the labelled filter."""
        if self.q:
            # Kept as typed (the page shows it back); compared in the stored text's form.
            qs = qs.filter(search_text__icontains=search_form(self.q))
        if self.name:
            qs = qs.filter(name=self.name)
        if self.tag:
            if connection.vendor == "postgresql":
                qs = qs.filter(tags__contains=[self.tag])
            else:
                # SQLite has no JSON containment; the quoted tag in the stored array is exact.
                qs = qs.filter(tags__icontains=json.dumps(self.tag))
        if self.has_error is not None:
            qs = qs.filter(has_error=self.has_error)
        if self.source:
            qs = qs.filter(source=self.source)
        if self.integration is not None:
            qs = qs.filter(integration_id=self.integration)
        tz = timezone.get_current_timezone()
        if self.date_from:
            start = dt.datetime.combine(self.date_from, dt.time.min, tzinfo=tz)
            qs = qs.filter(timestamp__gte=start)
        if self.date_to and (after := day_after(self.date_to)):
            qs = qs.filter(timestamp__lt=dt.datetime.combine(after, dt.time.min, tzinfo=tz))
        if label_state and self.label == "labelled":
            qs = qs.labelled()
        elif label_state and self.label == "unlabelled":
            qs = qs.unlabelled()
        return qs


CONVERSATION_STATES = ("open", "complete")


def read_conversation_filters(data) -> tuple[dict, dict[str, str]]:
    """Read the conversation list's filters: ``({source, has_error, state}, unread)``.

    The errors and source filters read as the trace list's do; ``unread`` names what did
    not read (as ``TraceFilters.unread``), for the page to show and the API to refuse.
    """
    data = data or {}
    given = {key: data.get(key) for key in ("has_error", "source")}
    read = TraceFilters.from_data(given)
    unread = read.unread(given)
    state = str(data.get("state") or "").strip()
    if state not in ("", *CONVERSATION_STATES):
        unread["state"] = not_read(state, "open or complete")
        state = ""
    return {"source": read.source, "has_error": read.has_error, "state": state}, unread
