from django import template

from evals.versions.display import highlight_code, metric_scopes
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


@register.filter
def headline_scope(eval) -> str:
    """Say which labels an eval's agreement and κ are on, as its page does (metric_scopes)."""
    if "metrics" in eval.get_deferred_fields():
        # Lists defer the JSON and annotate the parts (evals.versions.selectors).
        metrics = {
            "heldout": getattr(eval, "list_heldout", None),
            "training": getattr(eval, "list_training", None),
            "labels": getattr(eval, "list_labels", None),
            "heldout_trace_ids": getattr(eval, "list_heldout_trace_ids", None),
        }
    else:
        metrics = eval.metrics
    return metric_scopes(metrics)["headline"]


# The traces' percent format under the name eval pages use.
register.filter("pct", percent)
