"""Syntax highlighting of eval code for the UI (Pygments classes; static/css/pygments.css)."""

from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


def highlight_python(code: str) -> SafeString:
    """Return `code` as highlighted HTML with line numbers; Pygments escapes the source."""
    formatter = HtmlFormatter(
        # Classes, not inline styles: the Content-Security-Policy allows no inline styles.
        linenos="table",
        cssclass="code-highlight",
        wrapcode=True,
    )
    return mark_safe(highlight(code, PythonLexer(), formatter))  # noqa: S308 (escaped by Pygments)
