"""Content-Security-Policy: iofold's policy and the one relaxation third-party pages get."""

from functools import wraps

from django.conf import settings
from django.utils.csp import CSP, build_policy

# Everything from this origin only. No inline <script>, event-handler attribute, <style>
# or style= attribute anywhere in iofold's own pages: behaviour is in static/js, looks in
# static/css, and htmx is configured (templates/base.html) to need neither inline styles
# nor eval.
POLICY = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}


def inline_styles_policy() -> dict:
    """Return the site's policy with inline styles allowed; scripts stay as strict.

    Only for pages built by third-party code that sets style attributes and cannot be
    changed here: Swagger UI at /api/docs/ and DRF's browsable API. Inline styles cannot
    run code; the script policy is what stops injected markup from doing harm.
    """
    policy = dict(settings.SECURE_CSP)
    policy["style-src"] = [*policy.get("style-src", [CSP.SELF]), CSP.UNSAFE_INLINE]
    return policy


def set_inline_styles_policy(response) -> None:
    """Give the response `inline_styles_policy()` unless it carries a policy already."""
    # The CSP middleware leaves a header the view has set alone.
    if settings.SECURE_CSP and CSP.HEADER_ENFORCE not in response:
        response.headers[str(CSP.HEADER_ENFORCE)] = build_policy(inline_styles_policy())


def allow_inline_styles(view):
    """Serve the view under `inline_styles_policy()` instead of the site's policy."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        set_inline_styles_policy(response)
        return response

    return wrapper
