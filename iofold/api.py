"""Project-wide API wiring: the exception handler that maps domain errors to 400."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from iofold.exceptions import ApplicationError


def exception_handler(exc, context):
    """Map ``ApplicationError`` to ``400 {"detail": ...}``; defer to DRF otherwise."""
    if isinstance(exc, ApplicationError):
        return Response({"detail": exc.message}, status=400)
    return drf_exception_handler(exc, context)
