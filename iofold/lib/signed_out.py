"""A signed-out htmx request goes to the sign-in page as a whole page.

When a session ends while a page is open (it expired, or the person signed out in another
tab), the page's next htmx request (a label, a progress poll) is redirected to the sign-in
page; the browser follows the redirect unseen and htmx swaps the whole sign-in page into
the fragment it was updating: a login form inside the review card. Such a request is
answered with ``HX-Redirect`` instead, which htmx follows as a page load, and ``next`` is
the page the person was on, not the fragment's address.
"""

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect


class SignedOutHtmxMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            getattr(request, "htmx", False)
            and response.status_code == 302
            and not request.user.is_authenticated
            and response["Location"].split("?")[0] == resolve_url(settings.LOGIN_URL)
        ):
            page = request.htmx.current_url_abs_path or "/"
            return HttpResponseClientRedirect(redirect_to_login(page)["Location"])
        return response
