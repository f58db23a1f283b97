"""Syntax highlighting of eval code for the UI (Pygments, inline styles, no extra CSS)."""

from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


def highlight_python(code: str) -> SafeString:
    """Return `code` as highlighted HTML with line numbers; Pygments escapes the source."""
    formatter = HtmlFormatter(
        linenos="table", noclasses=True, style="friendly", cssclass="code-highlight", wrapcode=True
    )
    return mark_safe(highlight(code, PythonLexer(), formatter))  # noqa: S308 (escaped by Pygments)
