import json
from urllib.parse import quote

from django import template
from django.utils.safestring import mark_safe
from django.utils.timezone import get_current_timezone, is_aware

from iofold.lib.text import clip, escape_text
from traces import conversations
from traces.minify import minify_trace
from traces.models import Trace
from traces.vocabulary import WHEN_STRFTIME

register = template.Library()

# Levels of a JSON value shown on a page. The indenting encoder recurses in Python, a few
# frames a level, so a value stored hundreds of levels deep would exhaust the stack.
MAX_SHOWN_DEPTH = 32
DEEPER_NOT_SHOWN = f"… (nested deeper than {MAX_SHOWN_DEPTH} levels: not shown)"


def _clipped(value, depth: int = 0):
    """Return ``value`` with everything below ``MAX_SHOWN_DEPTH`` levels replaced by a note."""
    if isinstance(value, (dict, list)) and depth >= MAX_SHOWN_DEPTH:
        return DEEPER_NOT_SHOWN
    if isinstance(value, dict):
        return {key: _clipped(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_clipped(item, depth + 1) for item in value]
    return value


def _indented(value, *, indent: int, limit: int | None) -> tuple[str, bool]:
    """Return ``value`` as indented JSON, stopped at ``limit`` characters unless None, and
    whether it was cut.

    Indented, JSON is written by the standard library's pure-Python encoder: the 5,000
    steps of a trace took it a tenth of a second, and every review card of the trace paid
    it to show 4,000 characters. Cut, only the head shown is written."""
    encoder = json.JSONEncoder(indent=indent, ensure_ascii=False, default=str)
    if limit is None:
        return encoder.encode(value), False
    parts, length = [], 0
    for chunk in encoder.iterencode(value):
        parts.append(chunk)
        length += len(chunk)
        if length > limit:
            return "".join(parts)[:limit], True
    return "".join(parts), False


def _compact_size(value) -> int:
    """Return the characters of ``value`` as compact JSON (the C encoder: fast)."""
    return len(json.dumps(value, ensure_ascii=False, default=str))


@register.simple_tag
def pretty_json(value, limit: int = 20_000, full: bool = False) -> dict:
    """Return ``{"text", "truncated", "size"}``: indented JSON, cut at ``limit`` characters.

    ``size`` is the whole text's length, or for a cut JSON value its length as compact
    JSON (the indented whole is not written to count it)."""
    if isinstance(value, str):
        truncated = not full and len(value) > limit
        return {"text": value[:limit] if truncated else value, "truncated": truncated,
                "size": len(value)}  # fmt: skip
    clipped = _clipped(value)
    text, truncated = _indented(clipped, indent=2, limit=None if full else limit)
    size = _compact_size(clipped) if truncated else len(text)
    return {"text": text, "truncated": truncated, "size": size}


# Messages shown of a long chat payload before "Show all": a run's history of hundreds of
# messages would bury the card (the raw JSON is cut the same way, at ``preview_chars``).
MAX_SHOWN_MESSAGES = 40


@register.simple_tag
def chat_messages(value, full: bool = False) -> dict | None:
    """The payload read as chat messages (``traces.conversations.chat_messages``), or None:
    ``{"shown": the first MAX_SHOWN_MESSAGES unless full, "total"}``."""
    messages = conversations.chat_messages(value)
    if messages is None:
        return None
    shown = messages if full else messages[:MAX_SHOWN_MESSAGES]
    return {"shown": shown, "total": len(messages)}


# Turns of a conversation shown before "Show all", and characters of each message: 2,000
# turns made a 1.4 MB conversation page, sent again with every review card of it, and one
# turn's 5 MB answer would have gone whole with each.
MAX_SHOWN_TURNS = 100
MAX_TURN_CHARS = 4000


@register.simple_tag
def shown_turns(turns, full: bool = False) -> dict:
    """A conversation's turns (``TurnView`` list) as its chat shows them:
    ``{"shown": the first MAX_SHOWN_TURNS unless full, "total", "chars": MAX_TURN_CHARS
    unless full}``."""
    if full:
        return {"shown": turns, "total": len(turns), "chars": None}
    return {"shown": turns[:MAX_SHOWN_TURNS], "total": len(turns), "chars": MAX_TURN_CHARS}


@register.simple_tag
def compact_trace(data, limit: int = 20_000, full: bool = False) -> dict:
    """The trace's compact view (traces.minify) as indented JSON, cut at ``limit`` characters
    unless ``full``, with both sizes (as compact JSON).

    Compact values, but every step: a 5,000-step trace made a megabyte of it, sent with
    every review card."""
    compact = minify_trace(data) if isinstance(data, dict) else data
    text, truncated = _indented(compact, indent=1, limit=None if full else limit)
    return {
        "text": text,
        "truncated": truncated,
        "limit": limit,
        "size": _compact_size(compact),
        "full_size": _compact_size(data),
    }


@register.filter
def ms(value) -> str:
    """Format milliseconds as 850 ms or 2.3 s."""
    if value is None or value == "":
        return "—"
    value = float(value)
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


@register.filter
def total_steps(turns) -> int:
    """The steps of every turn of a conversation (``TurnView`` list), for its figures."""
    return sum(turn.trace.step_count or 0 for turn in turns)


@register.filter
def elapsed(seconds) -> str:
    """Format a pause between turns as 45 s, 17 min, 2 h 5 min or 3 d 4 h."""
    if seconds is None or seconds == "":
        return "—"
    seconds = round(float(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return f"{minutes} min"
    if hours < 24:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


@register.filter
def source_name(value) -> str:
    """A source as the trace pages name it (``otlp`` → OpenTelemetry (OTLP))."""
    try:
        return Trace.Source(value).label
    except ValueError:
        return value


@register.filter
def percent(value) -> str:
    """A share as a whole percent, ``0.875`` → ``88%``; the one format of every page."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.0f}%"


@register.filter
def rating_symbol(rating) -> str:
    return {"positive": "✓", "negative": "✗", "neutral": "–"}.get(rating or "", "?")


@register.filter
def brief(value, length: int = 160) -> str:
    """One line of a JSON value, for previews."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


# The trace list renders 50 rows of about 40 template nodes each; through the template
# engine that is most of the page's server time (~25 ms), so the rows are built here with
# plain string formatting, as Django's admin builds its changelist rows
# (``items_for_result``): about 2 ms. Every text value goes through ``escape_text``, the
# standard library's escape (Django's ``escape`` is the same plus a lazy-string wrapper
# that cost more than the escaping); what is the same for every row is escaped once.
_SOURCE_CELLS = {value: f"<td>{escape_text(label)}</td>" for value, label in Trace.Source.choices}
_RATING_CELLS = (("positive", "pos", "✓"), ("negative", "neg", "✗"), ("neutral", "neu", "–"))
_STATUS_CELLS = {
    True: '<td><span class="badge bad">error</span></td>',
    False: '<td><span class="badge good">ok</span></td>',
}


def _label_cell(trace) -> str:
    total = getattr(trace, "label_total", 0)
    if not total:
        return '<span class="muted">—</span>'
    counts = trace.label_counts
    parts = [
        f'<span class="{css}">{symbol} {int(counts[rating])}</span>'
        for rating, css, symbol in _RATING_CELLS
        if counts.get(rating)
    ]
    if not trace.label_state:
        parts.append('<span class="badge warn" title="Reviewers disagree">tie</span>')
    return f'<span class="split" title="{int(total)} label(s)">{" ".join(parts)}</span>'


def _row(trace, row_url: str, tz) -> str:
    """One row; ``row_url`` is the list's URL, already escaped."""
    label = str(trace)
    escaped = escape_text(label)
    shown = escaped if len(label) <= 60 else escape_text(clip(label, 60))
    tags = ""
    if trace.tags:
        badges = "".join(
            f'<a class="badge" href="?tag={escape_text(quote(tag))}">{escape_text(tag)}</a>'
            for tag in map(str, trace.tags[:4])
        )
        tags = f'<div class="tags">{badges}</div>'
    stamp = trace.timestamp
    if stamp is not None and is_aware(stamp):
        stamp = stamp.astimezone(tz)
    when = stamp.strftime(WHEN_STRFTIME) if stamp is not None else ""
    source = _SOURCE_CELLS.get(trace.source) or f"<td>{escape_text(str(trace.source))}</td>"
    tools = (
        f' <small class="muted">({int(trace.tool_call_count)})</small>'
        if trace.tool_call_count
        else ""
    )
    pk, steps = trace.pk, int(trace.step_count)
    return (
        f'<tr class="{"error" if trace.has_error else ""}"><td><input type="checkbox" '
        f'name="trace" value="{pk}" aria-label="Select {escaped}">'
        f'</td><td><a class="trace-name" '
        f'href="{row_url}{pk}/">{shown}</a>{tags}</td>'
        f"<td>{when}</td>{source}{_STATUS_CELLS[bool(trace.has_error)]}"
        f'<td class="num" title="{steps} steps, '
        f'{int(trace.tool_call_count)} of them tool calls">{steps}{tools}</td>'
        f'<td class="num">{ms(trace.latency_ms)}</td><td>{_label_cell(trace)}</td></tr>\n'
    )


@register.simple_tag
def trace_rows(traces, list_url: str) -> str:
    """Return the trace list's table rows; row links are ``list_url`` plus the trace id."""
    # Looked up once per table: the language and time zone are the request's.
    tz = get_current_timezone()
    row_url = escape_text(list_url)
    rows = "".join(_row(trace, row_url, tz) for trace in traces)
    return mark_safe(rows)  # noqa: S308 - _row escapes every text value
