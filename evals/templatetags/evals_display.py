from django import template

from evals.versions.display import highlight_code

register = template.Library()

MAX_INDENT = 10


@register.filter
def python(code: str):
    """Render Python source highlighted, with line numbers."""
    return highlight_code(code or "")


@register.filter
def indent_level(depth) -> int:
    """Return a version's lineage depth capped to the `depth-N` classes in evals.css."""
    return min(int(depth or 0), MAX_INDENT)


@register.filter
def pct(value) -> str:
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.0f}%"
