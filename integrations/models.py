from django.db import models

from workspaces.models import WorkspaceOwned
from workspaces.querysets import WorkspaceQuerySet


class IntegrationQuerySet(WorkspaceQuerySet):
    def enabled(self):
        return self.filter(enabled=True)


class Integration(WorkspaceOwned):
    """A connection to a trace platform (Langfuse first)."""

    class Kind(models.TextChoices):
        LANGFUSE = "langfuse", "Langfuse"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.LANGFUSE)
    enabled = models.BooleanField(default=True)

    objects = IntegrationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
