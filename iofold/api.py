"""Project-wide API wiring: the exception handler that maps domain errors to 400."""

from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from iofold.exceptions import ApplicationError
from iofold.lib.csp import set_inline_styles_policy


def exception_handler(exc, context):
    """Map ``ApplicationError`` to ``400 {"detail": ...}``; defer to DRF otherwise."""
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message}, status=400)
    return drf_exception_handler(exc, context)


class InlineStylesBrowsableAPIRenderer(BrowsableAPIRenderer):
    """DRF's browsable API, whose templates carry style attributes, with inline styles allowed."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None:
            set_inline_styles_policy(response)
        return super().render(data, accepted_media_type, renderer_context)
