"""Presentation helpers for eval pages: highlighted code, diffs, the version chart."""

import difflib
from dataclasses import dataclass

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from iofold.lib.scroll_region import scroll_region_attrs
from iofold.lib.text import clip, escape_text
from traces.templatetags.trace_tags import brief
from traces.vocabulary import WHEN_STRFTIME


def highlight_code(
    code: str, *, marked_lines: tuple[int, ...] = (), css_class: str = "code"
) -> SafeString:
    """Return Pygments HTML for Python code, with line numbers and marked lines.

    Classes, not inline styles: the Content-Security-Policy allows no inline styles
    (static/css/pygments.css styles both ``.code`` and ``.code-highlight``).
    """
    formatter = HtmlFormatter(
        linenos="table", cssclass=css_class, hl_lines=list(marked_lines), wrapcode=True
    )
    return mark_safe(highlight(code, PythonLexer(), formatter))  # noqa: S308 - Pygments escapes


def code_css() -> str:
    """Return the rules for highlighted code, as served from static/css/pygments.css.

    Xcode's colours: every one reads at least 4.5:1 on its white (friendly's numbers were
    2.8:1 on its grey, its namespaces 3.7:1).
    """
    return HtmlFormatter(style="xcode").get_style_defs([".code", ".code-highlight"])


# HtmlDiff pairs every removed line of a changed block with every added line to find the
# closest (difflib.Differ._fancy_replace): quadratic or worse. Two 800-line versions that
# share no line took 19 s of CPU, two 3,000-line ones minutes, and the diff page hung.
# Above this many pairs (a 50-line block rewritten, about 0.2 s) the page shows the line
# diff instead, whose cost grows with the code's length.
MAX_PAIRED_LINES = 2_500


def side_by_side(a: str, b: str, *, a_label: str, b_label: str) -> SafeString:
    """Return a side-by-side HTML table of the changed lines of two versions' code, three
    unchanged lines around each change (difflib.HtmlDiff). Generated code runs to a thousand
    lines of helpers; the whole of it side by side buried a one-line change.

    When the versions rewrite too much to pair lines up (``MAX_PAIRED_LINES``), return the
    unified diff, whole, with a notice saying why."""
    a_lines, b_lines = a.splitlines(), b.splitlines()
    opcodes = difflib.SequenceMatcher(None, a_lines, b_lines).get_opcodes()
    pairs = sum((i2 - i1) * (j2 - j1) for tag, i1, i2, j1, j2 in opcodes if tag == "replace")
    if pairs > MAX_PAIRED_LINES:
        return _unified_html(a_lines, b_lines, a_label=a_label, b_label=b_label)
    table = difflib.HtmlDiff(tabsize=4, wrapcolumn=80).make_table(
        a_lines, b_lines, a_label, b_label, context=True, numlines=3
    )
    return mark_safe(table)  # noqa: S308 - HtmlDiff escapes the code


_LINE_CLASSES = {"+": "diff_add", "-": "diff_sub", "@": "diff_header"}


def _unified_html(a_lines: list[str], b_lines: list[str], *, a_label: str, b_label: str):
    lines = list(difflib.unified_diff(a_lines, b_lines, a_label, b_label, lineterm=""))
    removed = sum(1 for line in lines[2:] if line.startswith("-"))
    added = sum(1 for line in lines[2:] if line.startswith("+"))
    rows = "".join(
        f'<span class="{_LINE_CLASSES.get(line[:1], "")}">{escape_text(line)}</span>\n'
        for line in lines
    )
    notice = (
        f'<p class="notice info" data-testid="diff-too-large">{escape_text(b_label)} removes '
        f"{removed:,} lines of {escape_text(a_label)} and adds {added:,}: too many to lay "
        "side by side, so here is the line diff.</p>"
    )
    region = scroll_region_attrs("Line diff")  # it scrolls itself: reachable by keyboard
    html = f'{notice}<pre class="diff unified" data-testid="unified-diff" {region}>{rows}</pre>'
    return mark_safe(html)  # noqa: S308 - every text escaped


def unified(a: str, b: str, *, a_label: str, b_label: str) -> str:
    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), a_label, b_label
        )
    )


@dataclass
class ChartDot:
    x: float
    y: float
    version: int
    value: float
    status: str


@dataclass
class VersionChart:
    width: int
    height: int
    dots: list[ChartDot]
    polyline: str
    bar_y: float

    @property
    def empty(self) -> bool:
        return not self.dots

    @property
    def is_line(self) -> bool:
        """A single measured version is one dot: the legend should not promise a line."""
        return len(self.dots) > 1

    @property
    def has_active(self) -> bool:
        return any(d.status == "active" for d in self.dots)


def version_chart(
    history: list[dict], *, width: int = 560, height: int = 150, bar: float = 0.8
) -> VersionChart:
    """Lay out agreement per version (x: version order, y: 0..1) for an inline SVG."""
    pad_x, pad_y = 28, 12
    inner_w, inner_h = width - 2 * pad_x, height - 2 * pad_y
    n = len(history)

    def x_of(i: int) -> float:
        return round(pad_x + (inner_w / 2 if n == 1 else i / (n - 1) * inner_w), 1)

    def y_of(v: float) -> float:
        return round(pad_y + (1 - max(0.0, min(1.0, v))) * inner_h, 1)

    # One line: a version's agreement is already its held-out figure when one was measured
    # (evals.metrics.measure), so a second, held-out line would only repeat it.
    dots = [
        ChartDot(x_of(i), y_of(row["agreement"]), row["version"], row["agreement"], row["status"])
        for i, row in enumerate(history)
        if row["agreement"] is not None
    ]
    return VersionChart(
        width=width,
        height=height,
        dots=dots,
        polyline=" ".join(f"{d.x},{d.y}" for d in dots),
        bar_y=y_of(bar),
    )


# The counts that make up Agreement.labelled, for figures stored without it.
_COUNTED = ("tp", "fp", "fn", "tn", "errors")


def _labels(n: int) -> str:
    return f"{n} label{'' if n == 1 else 's'}"


def metric_scopes(metrics: dict | None) -> dict[str, str]:
    """Say which labels each set of figures is computed on, e.g. "held-out, 12 labels".

    "headline" covers κ, balanced accuracy and agreement (held-out when measured, as
    Eval._headline_metrics picks); "training" covers the training figures: accuracy,
    precision / recall and the confusion counts, which are every label unless traces
    were kept back.
    """
    metrics = metrics or {}
    heldout = metrics.get("heldout") or {}
    training = metrics.get("training") or {}
    counts = metrics.get("labels") or {}
    every = int(counts.get("positive") or 0) + int(counts.get("negative") or 0)
    n = int(training.get("labelled") or sum(int(training.get(k) or 0) for k in _COUNTED))
    kept_back = bool(metrics.get("heldout_trace_ids")) or n < every
    training_scope = f"training, {_labels(n)}" if kept_back else f"all {_labels(n)}"
    if heldout.get("labelled"):
        return {"headline": f"held-out, {_labels(heldout['labelled'])}", "training": training_scope}
    return {"headline": training_scope, "training": training_scope}


def confusion(metrics: dict | None) -> dict | None:
    """Return the training confusion counts with a shade 0..10 per cell (`shade-N` classes),
    the labelled traces left out of them (no verdict) and the neutral labels (in no figure).
    """
    figures = (metrics or {}).get("training") or {}
    if not figures or "tp" not in figures:
        return None
    cells = {k: int(figures.get(k) or 0) for k in ("tp", "fp", "fn", "tn")}
    top = max(cells.values()) or 1
    return {k: {"n": v, "shade": round(10 * v / top)} for k, v in cells.items()} | {
        "errors": int(figures.get("errors") or 0),
        "neutral": int(((metrics or {}).get("labels") or {}).get("neutral") or 0),
        "scope": metric_scopes(metrics)["training"],
    }


def contradiction_tiles(columns) -> list[dict]:
    """Return the before / after page's tile per matrix column: its contradictions, or
    None while the version is not measured.

    "Measured" is what the confusion box below reads (``confusion``): a version with some
    verdicts stored but no figures yet (a test run still going) would otherwise show a
    partial count next to "Not measured on the labels yet".
    """
    return [
        {
            "version": c.eval.version,
            "contradict": c.contradict if confusion(c.eval.metrics) else None,
            "errors": c.errors,
        }
        for c in columns
    ]


_LABEL_BADGES = {
    "positive": '<span class="badge good">✓ good</span>',
    "negative": '<span class="badge bad">✗ bad</span>',
    "neutral": '<span class="badge">– neutral</span>',
}


def matrix_row_html(row) -> SafeString:
    """Return one matrix row (trace, human label, one cell per version) as HTML in one pass.

    A page has 50 rows of up to 20 cells; the template engine spent most of the page's
    time on these loops. ``row.trace_url`` and each cell's ``url`` are set by the view.
    Labels, states and verdicts come from fixed sets; everything else is escaped.
    """
    trace = row.trace
    name = clip(trace.name or trace.external_id, 32)
    when = timezone.localtime(trace.timestamp).strftime(WHEN_STRFTIME)
    cells = "".join(
        f'<td class="v {c.state}"><button type="button" class="cell" hx-get="{escape_text(c.url)}"'
        f' hx-target="#drill" hx-swap="innerHTML" data-state="{c.state}" title="{c.state}"'
        f' aria-label="{c.spoken}">'
        f"{c.verdict}</button></td>"
        for c in row.cells
    )
    snippet = (
        f'<br><small class="snippet"><span class="muted">In:</span> '
        f"{escape_text(brief(getattr(trace, 'input', None), 80))}<br>"
        f'<span class="muted">Out:</span> {escape_text(brief(getattr(trace, "output", None), 80))}'
        "</small>"
    )
    notes = "".join(
        f'<br><small class="note">“{escape_text(clip(n, 100))}”</small>' for n in row.notes
    )
    html = (
        f'<tr><td><a href="{escape_text(row.trace_url)}">{escape_text(name)}</a>'
        f'<br><small class="muted">{when}</small>{snippet}{notes}</td>'
        f"<td>{_LABEL_BADGES.get(row.label, _LABEL_BADGES['neutral'])}</td>{cells}</tr>"
    )
    return mark_safe(html)  # noqa: S308 - fixed words and escaped values
