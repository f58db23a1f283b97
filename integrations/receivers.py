"""Sources that receive traces (OTLP exporters, the Agents SDK's exporter): their one row.

An API token names the workspace; what it posts goes to the workspace's source of that
kind, an integration created on the first post (or from its setup page), so each kind has
one trace namespace and one place to show when it last received, how much, and the last
problem. ``integrations.otlp.receiver`` and ``traces.agents_api`` both go through here.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from integrations.adapters import get_adapter_class, receives
from integrations.models import Integration

logger = logging.getLogger(__name__)

# A clean post on a source that is already OK only moves "last received": one write in
# this many seconds shows it well enough (as a token's "last used") without a write per
# post, which an exporter sends several times a second.
RECEIPT_REFRESH_SECONDS = 60


class ReceiverDisabled(Exception):
    """The workspace's source of this kind is disabled: posts are refused."""


def find_receiver(*, workspace, kind: str) -> Integration | None:
    """Return the workspace's (first) source of a receiving ``kind``, or None."""
    return (
        Integration.objects.for_workspace(workspace)
        .present()
        .filter(kind=kind)
        .select_related("workspace")
        .order_by("created_at", "id")
        .first()
    )


def get_or_create_receiver(*, workspace, kind: str) -> Integration:
    """Return the workspace's source of ``kind``, creating it on first use."""
    if not receives(kind):
        raise ValueError(f"{kind!r} is not a kind of source that receives traces")
    existing = find_receiver(workspace=workspace, kind=kind)
    if existing is not None:
        return existing
    name = get_adapter_class(kind).label
    try:
        with transaction.atomic():
            integration = Integration.objects.create(
                workspace=workspace, kind=kind, name=name, host=""
            )
    except IntegrityError:
        # A concurrent first post created it, or another source has the name.
        existing = find_receiver(workspace=workspace, kind=kind)
        if existing is not None:
            return existing
        fallback = Integration.Kind(kind).label
        with transaction.atomic():
            integration = Integration.objects.create(
                workspace=workspace,
                kind=kind,
                name=fallback if fallback != name else f"{name} (received)",
                host="",
            )
    logger.info(
        "receiver created integration=%s kind=%s workspace=%s", integration.pk, kind, workspace.pk
    )
    return integration


def check_enabled(integration: Integration) -> None:
    """Raise ``ReceiverDisabled`` when the source may not receive."""
    if not integration.enabled:
        raise ReceiverDisabled(f"“{integration.name}” is disabled.")


def record_receipt(
    integration: Integration, *, received: int, rejected: int, problem: str, unit: str = "spans"
) -> None:
    """Note a post on the source: when it last received, and the last problem.

    The status follows the latest post; the last problem stays, dated, until another one
    replaces it, so that a rejection between good posts is not lost from view. A clean
    post within ``RECEIPT_REFRESH_SECONDS`` of the last noted one changes nothing visible
    but the time, and is not written.
    """
    now = timezone.now()
    if (
        not rejected
        and integration.status == Integration.Status.OK
        and integration.last_synced_at is not None
        and (now - integration.last_synced_at).total_seconds() < RECEIPT_REFRESH_SECONDS
    ):
        return
    fields = {"last_synced_at": now, "updated_at": now}
    if rejected:
        fields.update(
            status=Integration.Status.ERROR,
            last_error=f"{now:%Y-%m-%d %H:%M:%S} UTC: {rejected} of {received} {unit} "
            f"rejected: {problem}",
        )
    elif integration.status != Integration.Status.OK:
        fields.update(status=Integration.Status.OK)
    Integration.objects.filter(pk=integration.pk).update(**fields)


def received_counts(integration: Integration | None) -> dict[str, int]:
    """Return how many traces, and spans (steps) in them, the source has stored."""
    if integration is None:
        return {"traces": 0, "spans": 0}
    counts = integration.traces.aggregate(traces=Count("id"), spans=Sum("step_count"))
    return {"traces": counts["traces"], "spans": counts["spans"] or 0}
