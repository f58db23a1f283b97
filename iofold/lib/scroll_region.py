"""``{% scroll_region "Members" %}``: the attributes that make a scroll box (a wide table's
``.table-wrap``, a code block, a ``<pre>``) reachable by keyboard. A template builtin: see
settings.

A box that overflows scrolls with the arrow keys only once it has the focus, and only some
browsers (recent Chromium and Firefox, not Safari) put such a box in the tab order by
themselves; ``tabindex="0"`` does in every one. The role and name say what the focus landed
on, since a ``<div>`` is otherwise read as nothing.
"""

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag(name="scroll_region")
def scroll_region_attrs(label: str) -> SafeString:
    return format_html('tabindex="0" role="region" aria-label="{}"', label)
