"""The one place a user-supplied redirect target (`next=`) is checked."""

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next(request: HttpRequest, fallback: str, *, field: str = "next") -> str:
    """Return the request's `next` target if it is a path on this site, else `fallback`.

    Only a local path is accepted: an absolute URL (even to this host), a scheme-relative
    `//evil`, a backslash form such as `/\\evil` that browsers read as `//evil`, and
    anything not starting with `/` all fall back.
    """
    target = request.POST.get(field) or request.GET.get(field) or ""
    if (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts=None, require_https=request.is_secure()
        )
    ):
        return target
    return fallback
