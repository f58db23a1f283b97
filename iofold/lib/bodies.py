"""Request bodies that never reach Django.

A WSGI server hands Django no body sent with ``Transfer-Encoding: chunked`` and no
``Content-Length``: it reads as empty, so an endpoint would answer as if nothing (or a
forged nothing) was sent, a misleading 400 or 401. Every API operation that takes a body
(POST, PUT, PATCH under /api/v1/) answers 411 from ``LengthRequiredMiddleware``, as the
OpenAPI schema says (``iofold.api.document_common_errors``); the OTLP receiver, outside the
API's prefix, asks ``require_content_length`` itself and answers in its own format.
"""

from django.http import HttpRequest, JsonResponse
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


API_PREFIX = "/api/v1/"
BODY_METHODS = ("POST", "PUT", "PATCH")


class LengthRequiredMiddleware:
    """Answer 411 (``{"detail": ...}``) to an API request whose body came chunked."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in BODY_METHODS and request.path.startswith(API_PREFIX):
            try:
                require_content_length(request)
            except LengthRequired as exc:
                return JsonResponse({"detail": str(exc.detail)}, status=exc.status_code)
        return self.get_response(request)
