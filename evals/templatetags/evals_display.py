from django import template

from evals.generation.pricing import unpriced_note
from evals.versions.display import highlight_code, metric_scopes
from traces.templatetags.trace_tags import percent

register = template.Library()

MAX_INDENT = 10

# Lines of a version's code its pages highlight; the download has them all. Highlighted,
# 3,000 lines of generated helpers made a 1.3 MB page, sent again with each matrix cell
# opened.
MAX_SHOWN_CODE_LINES = 400


@register.simple_tag
def code_preview(code: str) -> dict:
    """The first ``MAX_SHOWN_CODE_LINES`` lines of ``code`` highlighted:
    ``{"html", "shown", "total"}`` (lines)."""
    lines = (code or "").splitlines(keepends=True)
    shown = lines[:MAX_SHOWN_CODE_LINES]
    return {"html": highlight_code("".join(shown)), "shown": len(shown), "total": len(lines)}


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


@register.filter
def unpriced(model) -> str:
    """Word a cost with no known price for ``model`` as everywhere else (pricing.unpriced_note):
    "unknown (no price for local-llama-3)"."""
    return unpriced_note(None, [model or ""])
