"""The answer's status for a page that shows a form."""

from django import forms


def form_status(*forms_shown: forms.BaseForm | None) -> int:
    """400 when a form sent was refused (it is shown again with its errors and what was
    typed), 200 otherwise: a refused POST must not look like a success to a script, a
    test or htmx (which swaps 400s: the htmx-config of templates/base.html)."""
    refused = any(f is not None and f.is_bound and f.errors for f in forms_shown)
    return 400 if refused else 200
