"""The Langfuse adapter, one module per role.

- ``adapter``: ``LangfuseAdapter``, the scan over time windows, connection check, score push
- ``transport``: the cached SDK client, raw requests and the retry and error policy
- ``scan``: grouping newest-first rows into complete traces; the resume cursor
- ``filters``: Langfuse's JSON ``filter`` parameter
- ``normalise``: observations and trace exports to the normalised trace shape
- ``scores``: score batches measured in encoded bytes

The names other code uses are importable from here, as they were when this was one module
(the adapter registry names ``integrations.adapters.langfuse.LangfuseAdapter``).
"""

from integrations.adapters.langfuse.adapter import ID_BATCH, LangfuseAdapter
from integrations.adapters.langfuse.normalise import (
    ERROR_WORDS,
    TYPE_MAP,
    normalise_langfuse_export,
    normalise_observation,
    normalise_rows,
)
from integrations.adapters.langfuse.scan import cursor_progress
from integrations.adapters.langfuse.scores import SCORE_BATCH, SCORE_BATCH_BYTES
from integrations.adapters.langfuse.transport import FIELDS, PAGE_LIMIT, get_client

__all__ = [
    "ERROR_WORDS",
    "FIELDS",
    "ID_BATCH",
    "PAGE_LIMIT",
    "SCORE_BATCH",
    "SCORE_BATCH_BYTES",
    "TYPE_MAP",
    "LangfuseAdapter",
    "cursor_progress",
    "get_client",
    "normalise_langfuse_export",
    "normalise_observation",
    "normalise_rows",
]
