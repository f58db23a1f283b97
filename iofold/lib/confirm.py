"""Destructive actions ask first.

With JavaScript the page's own dialog asks (``<form data-confirm="...">``, see
static/js/iofold.js), and a yes goes with the form as ``confirmed=yes``. Without it the
form arrives unanswered, and the action asks on a page of its own before doing anything,
as the Django admin's delete action does.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def confirmed(request: HttpRequest) -> bool:
    """Whether the user said yes to the action's question (a GET only asks it: the
    question's page can be reloaded, or reached from the address bar)."""
    return request.method == "POST" and request.POST.get("confirmed") == "yes"


def ask_first(
    request: HttpRequest,
    *,
    question: str,
    detail: str,
    button: str,
    back_url: str,
    keep: dict | None = None,
) -> HttpResponse:
    """The page asking ``question``; its ``button`` posts the same action again, answered,
    with the fields of ``keep`` (name to a value or a list of values: a selection)."""
    kept = [
        (name, value)
        for name, values in (keep or {}).items()
        for value in (values if isinstance(values, list | tuple) else [values])
    ]
    ctx = {
        "question": question,
        "detail": detail,
        "button": button,
        "back_url": back_url,
        "kept": kept,
    }
    return render(request, "components/confirm_page.html", ctx)
