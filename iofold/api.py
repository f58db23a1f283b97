"""Project-wide API wiring: the page size cap, the id field and the id and choice
parameters, the JSON parser and the exception handler."""

import logging
import re

from django.apps import apps
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, QueryDict
from django.utils.text import capfirst
from drf_spectacular.utils import OpenApiParameter
from rest_framework import pagination, parsers, serializers, status
from rest_framework.exceptions import (
    APIException,
    NotFound,
    ParseError,
    Throttled,
    ValidationError,
)
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error

from iofold.exceptions import ApplicationError, RateLimited
from iofold.lib import jsontext
from iofold.lib.csp import set_inline_styles_policy
from iofold.lib.fields import MAX_ID


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pages, at most ``max_limit`` rows a page; a ``?limit=`` or
    ``?offset=`` that does not read is a 400 naming it, as on the cursor-paged lists.

    Without a cap, ``?limit=`` of 30 digits reaches the SQL LIMIT and overflows it (a 500).
    DRF reads ``?limit=ten`` or ``?offset=-1`` as its default, quietly: the typo went
    unnoticed. An offset past the end is an empty page.
    """

    max_limit = 200

    def get_limit(self, request) -> int:
        unread: dict[str, str] = {}
        limit = page_limit(
            request.query_params,
            unread,
            default=self.default_limit,
            most=self.max_limit,
            name=self.limit_query_param,
        )
        if unread:
            raise ValidationError(unread)
        return limit

    def get_offset(self, request) -> int:
        given = request.query_params.get(self.offset_query_param, "")
        if given == "":
            return 0
        # Digits only; past MAX_OFFSET every list has ended (and int() of 20,000 digits raises).
        if not (given.isascii() and given.isdigit()):
            raise ValidationError(
                {self.offset_query_param: f"{given[:40]!r} is not a whole number from 0."}
            )
        return int(given) if len(given) <= 10 else MAX_OFFSET + 1

    def get_schema_operation_parameters(self, view) -> list[dict]:
        """Document the bounds that ``get_limit`` and ``get_offset`` hold to."""
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: 1, self.offset_query_param: 0}
        for parameter in parameters:
            parameter["schema"]["minimum"] = bounds[parameter["name"]]
        return parameters


class IdField(serializers.IntegerField):
    """An object's id in a request: a whole number from 1 to ``MAX_ID``, else a 400.

    Without the bounds, an id of 30 digits in a list reaches ``pk__in`` and fails there:
    SQLite raises ``OverflowError`` and PostgreSQL "out of range for type bigint" (500s).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


class BodyIn(serializers.Serializer):
    """A request body's serializer: a field it does not take is a 400 naming it.

    DRF drops unknown fields: a PATCH with ``criterion`` for ``criteria`` answered 200 and
    changed nothing, and a create with a mistyped optional field took its default. A form
    (the browsable API's carries a CSRF token) is read as DRF reads it.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict) and not isinstance(data, QueryDict):
            known = [name for name, field in self.fields.items() if not field.read_only]
            if unknown := [name for name in data if name not in known]:
                message = f"Not a field of this request; it takes {', '.join(known)}."
                raise ValidationError({name: [message] for name in unknown})
        return super().to_internal_value(data)


def id_param(request, name: str) -> int | None:
    """Return the id in query parameter ``name``, None without one; a 400 naming it when it
    is no id (not a whole number from 1 to ``MAX_ID``)."""
    value = request.query_params.get(name, "")
    if value == "":
        return None
    try:
        return IdField().run_validation(value)
    except ValidationError as exc:
        raise ValidationError({name: exc.detail}) from None


def choice_param(request, name: str, choices) -> str | None:
    """Return query parameter ``name``, None without one; a 400 naming it when it is not one
    of ``choices`` (without the check, a NUL in it fails in PostgreSQL: a 500)."""
    value = request.query_params.get(name, "")
    if value == "":
        return None
    if value not in choices:
        raise ValidationError({name: [f"Not one of: {', '.join(choices)}."]})
    return value


def page_limit(
    params, unread: dict, *, default: int = 50, most: int = 200, name: str = "limit"
) -> int:
    """Read ``?limit=`` of a cursor-paged list: a whole number from 1, read as ``most`` above
    it (the cap of ``LimitOffsetPagination`` too). Anything else is named in ``unread``, for
    the view's 400 with its other unread filters: quietly reading 0 or -5 as 1 hid the typo."""
    given = params.get(name, "")
    if given == "":
        return default
    try:
        limit = int(given)
    except ValueError:
        limit = 0
    if limit < 1:
        unread[name] = f"{given[:40]!r} is not a whole number from 1 (at most {most} a page)."
        return default
    return min(limit, most)


MAX_OFFSET = 2**31 - 1


def window_params(params, name: str, *, default: int, most: int) -> tuple[int, int]:
    """Read ``?<name>_offset=`` and ``?<name>_limit=``, the window of a detail's long list
    (a trace's steps, a conversation's turns); a 400 names either that does not read."""
    unread: dict[str, str] = {}
    given = params.get(f"{name}_offset", "")
    # Digits only, and few: int() of 20,000 digits raises, and no list is that long.
    offset = int(given) if given.isascii() and given.isdigit() and len(given) <= 10 else -1
    if given == "":
        offset = 0
    elif not 0 <= offset <= MAX_OFFSET:
        unread[f"{name}_offset"] = f"{given[:40]!r} is not a whole number from 0 to {MAX_OFFSET}."
    limit = page_limit(params, unread, default=default, most=most, name=f"{name}_limit")
    if unread:
        raise ValidationError(unread)
    return offset, limit


class WindowOut(serializers.Serializer):
    """Which part of a detail's long list the answer holds; ask for the rest from
    ``next_offset`` (null once the last is held)."""

    offset = serializers.IntegerField()
    limit = serializers.IntegerField()
    total = serializers.IntegerField()
    next_offset = serializers.IntegerField(allow_null=True)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing deep nesting and strings that cannot be stored (400).

    Without it, JSON nested thousands deep raises ``RecursionError`` and a lone surrogate
    fails later, in a renderer or the database: both 500s.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested deeper than {jsontext.MAX_DEPTH} levels"
            ) from None
        if problem := jsontext.find_problem(data):
            raise ParseError(f"JSON parse error - {problem}")
        return data


class PayloadTooLarge(APIException):
    """The request carries more than an endpoint accepts in one go (413)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def exception_handler(exc, context):
    """Map ``ApplicationError`` to ``{"detail": ...}``; defer to DRF otherwise.

    The one place API views turn errors into responses: views raise, never build error
    bodies by hand. A domain error is a 400, or a 503 when it says retrying can help
    (``permanent=False``: a provider outage, a busy sandbox). A Django
    ``ValidationError`` (a model's ``full_clean()`` inside a service) is a 400 with its
    messages by field, as a serializer's would be, rather than a 500. Too many requests,
    from DRF's throttles or a ``RateLimited`` budget (traces per minute), is a 429 with
    ``Retry-After`` in seconds. A form that Django refuses to read is a 400 (413 when
    too large) in JSON like any other, not Django's HTML error page. A field's message is
    always a list of messages. A 404 names what is missing in words ("Eval set not
    found."), never a model's class.
    """
    if isinstance(exc, RateLimited):
        exc = Throttled(wait=exc.retry_after, detail=exc.message)
    elif isinstance(exc, ApplicationError):
        transient = not getattr(exc, "permanent", True)
        code = status.HTTP_503_SERVICE_UNAVAILABLE if transient else status.HTTP_400_BAD_REQUEST
        return Response({"detail": exc.message}, status=code)
    if isinstance(exc, Http404):
        exc = _not_found(exc)
    elif isinstance(exc, DjangoValidationError):
        exc = ValidationError(as_serializer_error(exc))
    elif isinstance(exc, SuspiciousOperation):
        # A form Django refuses to read (too many fields, too large): DRF would let it
        # through to Django's HTML error page. Logged where Django logs it.
        logging.getLogger(f"django.security.{type(exc).__name__}").warning("%s", exc)
        if isinstance(exc, RequestDataTooBig):
            exc = PayloadTooLarge("The request body is too large.")
        else:
            exc = ParseError(str(exc))
    if isinstance(exc, ValidationError) and isinstance(exc.detail, dict):
        exc.detail = _messages_by_field(exc.detail)
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES when it loads, and
    # that names this module, so a module-level import is circular when this one loads first.
    from rest_framework.views import exception_handler as drf_exception_handler

    return drf_exception_handler(exc, context)


# What Django's get_object_or_404 (and DRF's get_object(), which calls it) says: the model's
# class name, which means nothing to a client. Django words it in English, untranslated.
MODEL_NOT_FOUND = re.compile(r"No (\w+) matches the given query\.")


def _not_found(exc: Http404) -> NotFound:
    """Return the 404 a client reads: "Deletion run not found." for Django's "No DeletionRun
    matches the given query.", a message a view wrote for people as it is, else "Not found."."""
    message = str(exc.args[0]) if exc.args else ""
    match = MODEL_NOT_FOUND.fullmatch(message)
    if match is None:
        return NotFound(message or None)
    model = next((m for m in apps.get_models() if m._meta.object_name == match[1]), None)
    return NotFound(f"{capfirst(model._meta.verbose_name)} not found." if model else None)


def _messages_by_field(detail: dict) -> dict:
    """Make each field's message a list of messages, as DRF's serializers give them.

    A view that refuses query parameters by hand (``{"limit": "..."}``) gave a string where
    a client reads a list. ``detail``, the one message about the whole request, stays one.
    """
    return {
        field: [messages] if isinstance(messages, str) and field != "detail" else messages
        for field, messages in detail.items()
    }


class InlineStylesBrowsableAPIRenderer(BrowsableAPIRenderer):
    """DRF's browsable API, whose templates carry style attributes, with inline styles allowed."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None:
            set_inline_styles_policy(response)
        return super().render(data, accepted_media_type, renderer_context)


# The header of each 201: ``parameters=[LOCATION]`` in the operation's ``extend_schema``.
LOCATION = OpenApiParameter(
    "Location",
    str,
    OpenApiParameter.HEADER,
    response=[201],
    description="The new object's address: GET it to read the object back.",
)

ERROR_SCHEMA = {
    "type": "object",
    "description": "A refusal, said for a human.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "What was wrong with the request: a list of messages by field name (nested as the"
        " request is), ``non_field_errors`` for the whole body, or ``detail`` when the body"
        " or a header could not be read at all."
    ),
    "properties": {"detail": {"type": "string"}},
    # A field's messages are a list; a nested field's, an object of the same shape.
    "additionalProperties": {"anyOf": [{"type": "array"}, {"type": "object"}]},
}
# Answers every operation can give, whatever its view: ``exception_handler`` shapes them.
COMMON_ERRORS = {
    "400": ("ValidationError", "The request, a query parameter or X-Workspace does not read."),
    "401": ("Error", "No credentials, or an invalid or revoked API token."),
    "403": ("Error", "The role may not do this (a viewer writing, say), or CSRF failed."),
    "404": ("Error", "No such object in the workspace, or no such workspace (X-Workspace)."),
    "429": ("Error", "Too many requests: wait for the Retry-After header's seconds."),
}
# And those of every operation that reads a body.
BODY_ERRORS = {
    "413": ("Error", "The request body is larger than the operation reads."),
    "415": ("Error", "The Content-Type is not one the operation reads."),
}
# And of every POST, PUT and PATCH (iofold.lib.bodies.LengthRequiredMiddleware).
LENGTH_ERRORS = {
    "411": ("Error", "The body was sent chunked without a Content-Length: send its length."),
}


def document_common_errors(result, generator, request, public):
    """Add the errors every API operation can answer to each operation of the schema.

    Authentication, the workspace and role checks and the throttles apply to every view,
    and an id in the path or ``X-Workspace`` can name nothing: a client must expect a 400,
    401, 403, 404 and 429 from each, a 413 and 415 from each that reads a body, and a 411
    from each POST, PUT and PATCH (a body sent chunked, without its length). An
    operation that documents one of these itself keeps its own; its 400 is its own refusal
    (or ``{"detail": ...}``) or a validation error. (A drf-spectacular postprocessing hook.)
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    schemas.setdefault("ValidationError", VALIDATION_ERROR_SCHEMA)
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            errors = {
                **COMMON_ERRORS,
                **(BODY_ERRORS if "requestBody" in operation else {}),
                **(LENGTH_ERRORS if method in ("put", "post", "patch") else {}),
            }
            for code, (component, description) in errors.items():
                ref = {"$ref": f"#/components/schemas/{component}"}
                own = responses.get(code, {}).get("content", {}).get("application/json")
                if code == "400":
                    # A refusal of the logic ({"detail": ...}, or the view's own report when it
                    # documents one), or a body or a field that does not read.
                    refusal = own["schema"] if own else {"$ref": "#/components/schemas/Error"}
                    ref = {"anyOf": [refusal, ref]}
                if own is None or code == "400":
                    responses[code] = {
                        "content": {"application/json": {"schema": ref}},
                        "description": responses.get(code, {}).get("description") or description,
                    }
    return result
