"""The LangSmith adapter.

- ``adapter``: ``LangSmithAdapter``, the runs scan, connection check and feedback writes
- ``normalise``: runs to the normalised trace shape
"""

from integrations.adapters.langsmith.adapter import SELECTS, LangSmithAdapter, feedback_id
from integrations.adapters.langsmith.normalise import normalise_run, normalise_runs

__all__ = ["SELECTS", "LangSmithAdapter", "feedback_id", "normalise_run", "normalise_runs"]
