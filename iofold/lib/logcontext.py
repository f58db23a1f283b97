"""Request and task ids on every log record, for the JSON logs.

The request middleware (``iofold.monitoring.RequestMetricsMiddleware``) and Celery's task
signals set them; ``ContextFilter`` copies them onto each record, so a formatter can print
them and a log search can gather everything one request or task wrote.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

request_id: ContextVar[str] = ContextVar("request_id", default="")
task_id: ContextVar[str] = ContextVar("task_id", default="")

# An id a proxy sends (X-Request-ID) is kept only if it is short and plain.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_request_id(value: str | None) -> str | None:
    return value if value and _SAFE_ID.match(value) else None


# The secret part of a one-time link (an invitation, an email confirmation, a password
# reset) in a logged path or Referer: whoever reads the log must not be able to follow it.
# Its slashes may be percent-encoded: a sign-in page's ?next= carries the link it returns to.
_SLASH = r"(?:/|%2F)"
_ONE_TIME_LINK = re.compile(
    rf"({_SLASH}(?:invitations|confirm-email|password{_SLASH}reset{_SLASH}key){_SLASH})"
    r"[^/%\s'\"?&#<>]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    return _ONE_TIME_LINK.sub(r"\1[redacted]", text)


class ContextFilter(logging.Filter):
    """Add ``request_id`` and ``task_id`` (empty when outside one) to every record, and
    take the secrets of one-time links out of it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.task_id = task_id.get()
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            # Written after the response, outside the request: its id is in the response.
            record.request_id = str(record.args.get("{x-request-id}o", "-")).strip("-")
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: the handler reports it, not us
            message = ""
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        request = getattr(record, "request", None)  # django.request's, printed by its repr
        record.request_id = record.request_id or getattr(request, "request_id", "")
        if request is not None and redact(repr(request)) != repr(request):
            record.request = redact(repr(request))
        if record.exc_text:  # formatted by another handler first, unredacted
            record.exc_text = redact(record.exc_text)
        data = getattr(record, "data", None)
        if isinstance(data, dict) and (record.exc_info or "exc" in data):
            # Celery's record of a failed task: its ``data`` repeated the traceback the
            # record's exc_info prints (a crash's traceback twice in one JSON line), and
            # its ``exc`` is the exception's message, unredacted.
            record.data = {
                key: redact(value) if isinstance(value, str) else value
                for key, value in data.items()
                if not (key == "traceback" and record.exc_info)
            }
        return True


class _RedactedTraceback:
    """A traceback (or stack) as a formatter writes it, one-time link secrets taken out:
    an exception's message may hold a path (a view's, a URL a task fetched)."""

    def formatException(self, ei) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


class PlainFormatter(_RedactedTraceback, logging.Formatter):
    """The development log format (``LOG_FORMAT=plain``)."""


class JsonFormatter(_RedactedTraceback, _JsonFormatter):
    """One JSON object per record (``LOG_FORMAT=json``)."""


def log_uncaught_exceptions() -> None:
    """Make an exception that stops the process one log record, traceback included.

    Python prints it to stderr piece by piece, and Celery (beat, a worker) has replaced
    stderr with a proxy that logs every piece as a record of its own, so a crash came out
    as hundreds of one-word log lines (JSON objects with LOG_FORMAT=json). Installed over
    the BadSetting hook (iofold.lib.env), which keeps its one line; before logging is
    configured, Python prints the traceback as usual.
    """
    previous = sys.excepthook
    if getattr(previous, "logs_uncaught_exceptions", False):
        return

    def hook(kind, exc, tb):
        from iofold.lib.env import BadSetting

        logged = logging.getLogger().handlers and not issubclass(
            kind, (BadSetting, KeyboardInterrupt)
        )
        if logged:
            logging.getLogger("iofold").critical(
                "uncaught %s, the process stops", kind.__name__, exc_info=(kind, exc, tb)
            )
        else:
            previous(kind, exc, tb)

    hook.logs_uncaught_exceptions = True
    sys.excepthook = hook
