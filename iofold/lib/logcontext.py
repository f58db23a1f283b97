"""Request and task ids on every log record, for the JSON logs.

The request middleware (``iofold.monitoring.RequestMetricsMiddleware``) and Celery's task
signals set them; ``ContextFilter`` copies them onto each record, so a formatter can print
them and a log search can gather everything one request or task wrote.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")
task_id: ContextVar[str] = ContextVar("task_id", default="")

# An id a proxy sends (X-Request-ID) is kept only if it is short and plain.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_request_id(value: str | None) -> str | None:
    return value if value and _SAFE_ID.match(value) else None


class ContextFilter(logging.Filter):
    """Add ``request_id`` and ``task_id`` (empty when outside one) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.task_id = task_id.get()
        return True
