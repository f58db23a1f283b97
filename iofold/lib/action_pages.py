"""An address that acts, opened by hand.

Deleting a workspace, enabling an integration, "Sync now": each acts on a POST only, and
Django answers a GET with an empty 405, a blank page for whoever follows a copied address
or presses Enter in the address bar after a form posted there. One middleware serves them
all: a logged-in browser's GET gets a page in the layout saying the address performs an
action, with the way back, still with status 405. The API keeps DRF's JSON 405: its
callers are programs.
"""

import inspect

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import Resolver404, resolve

from iofold.views import API_PREFIXES


class ActionPageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            # Django's own bare 405 only (require_POST, a class view's method check).
            isinstance(response, HttpResponseNotAllowed)
            and request.method == "GET"
            and request.user.is_authenticated
            and not request.path.startswith(API_PREFIXES)
        ):
            page = render(
                request, "405.html", {"back_url": way_back(request.path_info)}, status=405
            )
            page["Allow"] = response["Allow"]
            return page
        return response


def way_back(path: str) -> str:
    """Return the nearest page above ``path`` (``/w/acme/integrations/3/`` for
    ``/w/acme/integrations/3/sync/``)."""
    parts = path.rstrip("/").split("/")
    while len(parts) > 1:
        parts.pop()
        candidate = "/".join(parts) + "/"
        try:
            match = resolve(candidate)
        except Resolver404:
            continue
        if _answers_get(match.func):
            return candidate
    return "/"


def _answers_get(view) -> bool:
    """Whether ``view`` takes a GET: a label's address, above its "remove", is POST-only too.

    ``require_POST`` marks nothing on the view it wraps; the method list it keeps in its
    closure says. Anything else (or a decorator it cannot see through) counts as a page.
    """
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        return hasattr(view_class, "get")
    try:
        methods = inspect.getclosurevars(view).nonlocals.get("request_method_list")
    except TypeError:  # not a plain function
        return True
    return methods is None or "GET" in methods
