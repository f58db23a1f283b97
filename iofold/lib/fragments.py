"""An htmx fragment's own address, opened as a page.

Fragments have URLs of their own (polled progress, parts loaded into a page), and people
reach them outside htmx: a reload, the address bar, "open in new tab". Answered with the
fragment alone, that showed bare HTML with no layout and no way back. Outside htmx the
fragment is shown inside the layout instead, under a heading and a link to the page it
belongs to; htmx still gets the fragment alone.
"""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string


def fragment_or_page(
    request: HttpRequest,
    template_name: str,
    context: dict,
    *,
    title: str,
    back_url: str,
    back_label: str,
) -> HttpResponse:
    """Render ``template_name`` (a fragment) for htmx, else as a page titled ``title``."""
    if request.htmx:
        return render(request, template_name, context)
    page = {
        "title": title,
        "back_url": back_url,
        "back_label": back_label,
        "fragment": render_to_string(template_name, context, request),
    }
    return render(request, "components/fragment_page.html", page)
