"""Tell a workspace what iofold did by itself: an email to its owners and admins, and a
signed POST to the workspace's notification webhook.

The webhook is signed the way iofold's incoming webhook expects senders to sign
(``integrations.webhooks.sign``: ``X-Iofold-Timestamp`` and ``X-Iofold-Signature:
sha256=<HMAC-SHA256 of "<timestamp>.<body>">``), so a receiver checks both with one routine.
It goes through the outbound guard: a workspace cannot point it at internal addresses.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder

from evals.models import AutomationSettings
from integrations.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from iofold.lib import outbound
from workspaces.models import Membership

logger = logging.getLogger(__name__)

EVENT_HEADER = "X-Iofold-Event"
WEBHOOK_TIMEOUT = 5.0


def automation_settings(workspace) -> AutomationSettings:
    """Return the workspace's automation settings (defaults: nothing runs by itself)."""
    found = AutomationSettings.objects.for_workspace(workspace).first()
    return found or AutomationSettings(workspace=workspace)


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def managers_emails(workspace) -> list[str]:
    """Return the owners' and admins' addresses: they hear about automatic changes."""
    roles = (Membership.Role.OWNER, Membership.Role.ADMIN)
    return list(
        Membership.objects.for_workspace(workspace)
        .filter(role__in=roles, user__is_active=True)
        .values_list("user__email", flat=True)
        .order_by("user__email")
    )


def send_email(*, recipients: list[str], subject: str, body: str) -> None:
    if recipients:
        send_mail(
            subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{subject}",
            message=body,
            from_email=None,
            recipient_list=recipients,
        )


def post_webhook(*, automation: AutomationSettings, event: str, payload: dict) -> str:
    """POST a signed event to the workspace's webhook; return what happened, for the record.

    Never raises: a receiver that is down must not fail the refinement that notifies.
    """
    if not automation.webhook_url:
        return ""
    body = json.dumps({"event": event, **payload}, cls=DjangoJSONEncoder).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret=automation.webhook_secret, timestamp=timestamp, body=body),
    }
    try:
        with httpx.Client(
            transport=outbound.guarded_transport(httpx), timeout=WEBHOOK_TIMEOUT
        ) as client:
            response = client.post(automation.webhook_url, content=body, headers=headers)
    except (httpx.HTTPError, outbound.OutboundURLRefused) as exc:
        refusal = outbound.refusal_behind(exc)
        if refusal is not None:
            return f"refused: {refusal.message}"[:200]
        logger.warning("notification webhook failed workspace=%s", automation.workspace_id)
        return f"failed: {type(exc).__name__}"[:200]
    return f"HTTP {response.status_code}"


def notify(*, workspace, event: str, subject: str, body: str, payload: dict) -> str:
    """Email the workspace's managers, post the event to its webhook; return the post's outcome."""
    send_email(recipients=managers_emails(workspace), subject=subject, body=body)
    return post_webhook(automation=automation_settings(workspace), event=event, payload=payload)


def update_automation(
    *,
    workspace,
    auto_refine: bool,
    monthly_refinements: int,
    auto_promote: bool,
    webhook_url: str,
    new_secret: bool = False,
) -> tuple[AutomationSettings, str | None]:
    """Save the workspace's automation settings; return them and a new secret to show once.

    A webhook gets a signing secret when it is first set (or on request); the secret is
    returned here once and is only ever stored encrypted.
    """
    if webhook_url:
        outbound.check_url(webhook_url)
    row, _ = AutomationSettings.objects.get_or_create(workspace=workspace)
    shown = None
    if webhook_url and (new_secret or not row.webhook_secret):
        shown = row.webhook_secret = new_webhook_secret()
    row.auto_refine = auto_refine
    row.monthly_refinements = monthly_refinements
    row.auto_promote = auto_promote
    row.webhook_url = webhook_url
    row.save()
    return row, shown


def set_contradiction_threshold(*, eval_set, threshold: int):
    from evals.models import EvalSetAutomation

    row, _ = EvalSetAutomation.objects.update_or_create(
        eval_set=eval_set,
        defaults={"workspace_id": eval_set.workspace_id, "contradiction_threshold": threshold},
    )
    return row
