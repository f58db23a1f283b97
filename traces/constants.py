"""Values shared by the traces app's models and its plain modules (filters), which the
models import: kept here, the filters can read them without importing the models."""

from django.db import models

# An eval set's criteria go into every generation prompt and every judge call: a page of
# text says what makes a trace good; a novel pasted in would be paid for on each call.
MAX_CRITERIA_CHARS = 4000


class TraceSource(models.TextChoices):
    """Where a trace came from (``Trace.Source``)."""

    # A synced trace's source is its integration's kind.
    LANGFUSE = "langfuse", "Langfuse"
    LANGSMITH = "langsmith", "LangSmith"
    OPENAI = "openai", "OpenAI"
    OTLP = "otlp", "OpenTelemetry (OTLP)"
    UPLOAD = "upload", "Upload"
    API = "api", "API"
    WEBHOOK = "webhook", "Webhook"
    DEMO = "demo", "Demo"
