from django import template

from evals.versions.display import highlight_code
from traces.templatetags.trace_tags import percent

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


# The traces' percent format under the name eval pages use.
register.filter("pct", percent)
