import json

from django import template

register = template.Library()


@register.simple_tag
def pretty_json(value, limit: int = 20_000, full: bool = False) -> dict:
    """Return ``{"text", "truncated", "size"}``: indented JSON, cut at ``limit`` characters."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)
    size = len(text)
    truncated = not full and size > limit
    return {"text": text[:limit] if truncated else text, "truncated": truncated, "size": size}


@register.filter
def ms(value) -> str:
    """Format milliseconds as 850 ms or 2.3 s."""
    if value is None or value == "":
        return "—"
    value = float(value)
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


@register.filter
def percent(value) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


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
