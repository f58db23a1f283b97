"""Request bodies that never reach Django.

A WSGI server hands Django no body sent with ``Transfer-Encoding: chunked`` and no
``Content-Length``: it reads as empty, so an endpoint would answer as if nothing (or a
forged nothing) was sent, a misleading 400 or 401. Every endpoint that reads a body asks
``require_content_length`` first and answers 411, each in its own format.
"""

from django.http import HttpRequest
from rest_framework import status
from rest_framework.exceptions import APIException

LENGTH_REQUIRED = "Send a Content-Length; chunked bodies are not read."


class LengthRequired(APIException):
    """The body was sent chunked without a length, so it was not read (411)."""

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = LENGTH_REQUIRED
    default_code = "length_required"


def require_content_length(request: HttpRequest) -> None:
    """Raise ``LengthRequired`` when the body came chunked with no ``Content-Length``."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared == 0 and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        raise LengthRequired()
