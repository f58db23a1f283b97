"""Traces pushed in real time: an HMAC-signed webhook per integration.

A sender signs ``"<timestamp>.<raw body>"`` with the integration's webhook secret
(HMAC-SHA256, hex) and sends::

    X-Iofold-Timestamp: <unix seconds>
    X-Iofold-Signature: sha256=<hex digest>

Requests older (or newer) than five minutes are refused so a captured request cannot be
replayed later; within that window a replay only re-upserts the same traces, which the
natural-key upsert turns into "unchanged".
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations.constants import MAX_API_TRACES, MAX_REPORTED_ERRORS
from integrations.models import Integration
from integrations.uploads import to_normalised
from iofold.exceptions import RateLimited
from iofold.lib import jsontext
from iofold.lib.confirm import ask_first, confirmed
from iofold.lib.shown_once import keep_to_show, take_to_show
from iofold.pipeline import admit_traces, ingest_traces
from workspaces.access import workspace_view

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Iofold-Timestamp"
SIGNATURE_HEADER = "X-Iofold-Signature"
SIGNATURE_PREFIX = "sha256="
# How far a request's timestamp may be from now, in seconds, either way.
REPLAY_WINDOW = 300
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")
# Every unauthenticated failure gets this one answer, so that nobody can tell an unknown
# integration id from a known one (or one without a secret) from outside.
NOT_AUTHENTIC = (
    f"The request is not signed correctly: send {TIMESTAMP_HEADER} (Unix seconds, within 5 "
    f"minutes of now) and {SIGNATURE_HEADER} ({SIGNATURE_PREFIX}<hex HMAC-SHA256 of "
    '"<timestamp>.<body>" with the integration\'s webhook secret>).'
)


class WebhookRejected(Exception):
    """A webhook request that is not authentic (or too old); ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- services ------------------------------------------------------------------------------


def regenerate_webhook_secret(*, integration: Integration) -> str:
    """Give the integration a new webhook secret and return it (shown to the user once)."""
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    integration.webhook_secret = secret
    integration.save(update_fields=["webhook_secret", "updated_at"])
    logger.info("webhook secret regenerated integration=%s", integration.pk)
    return secret


def sign(*, secret: str, timestamp: int | str, body: bytes) -> str:
    """Return the signature header value for a body sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    *, secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> None:
    """Raise ``WebhookRejected`` unless the signature matches and the timestamp is fresh.

    The reason is for the server's log only: callers answer every rejection alike.
    """
    if not timestamp or not signature:
        raise WebhookRejected(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    # Strictly ASCII digits: int() would also take "+1_7e", other scripts' digits and
    # numbers too large to compare with a float (OverflowError).
    if not TIMESTAMP_PATTERN.fullmatch(timestamp):
        raise WebhookRejected(f"{TIMESTAMP_HEADER} is not Unix seconds")
    if abs(now - int(timestamp)) > REPLAY_WINDOW:
        raise WebhookRejected("timestamp more than 5 minutes away from now")
    # Without a secret, sign with a throwaway one anyway, so an unknown id costs the
    # same time as a known one.
    expected = sign(secret=secret or secrets.token_hex(32), timestamp=timestamp, body=body)
    matches = hmac.compare_digest(expected.encode(), signature.strip().encode())
    if not secret:
        raise WebhookRejected("unknown or disabled integration, or no webhook secret")
    if not matches:
        raise WebhookRejected("signature does not match")


def ingest_webhook(*, integration: Integration, items: list) -> dict:
    """Upsert pushed traces (normalised or Langfuse exports) as the integration's traces.

    They share the integration's natural-key namespace, so a trace pushed here and later
    synced (or pushed twice) stays one row.
    """
    traces, indexes, errors = [], [], []
    for index, obj in enumerate(items):
        try:
            traces.append(to_normalised(obj))
        except (ValueError, TypeError, KeyError) as exc:
            errors.append({"index": index, "error": f"not a valid Langfuse trace export: {exc}"})
            continue
        indexes.append(index)
    result = ingest_traces(
        workspace=integration.workspace, source="webhook", integration=integration, traces=traces
    )
    errors += [{"index": indexes[i], "error": reason} for i, reason in result.errors]
    errors.sort(key=lambda e: e["index"])
    return {
        "received": len(items),
        "created": result.created,
        "updated": result.updated,
        "unchanged": result.unchanged + result.duplicates,
        "failed": len(errors),
        "errors": errors[:MAX_REPORTED_ERRORS],
        "errors_truncated": len(errors) > MAX_REPORTED_ERRORS,
    }


# --- views ---------------------------------------------------------------------------------


def _reject(message: str, status: int = 401) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


@login_not_required
@csrf_exempt
@require_POST
def receive(request: HttpRequest, pk: int) -> JsonResponse:
    """Accept traces pushed to an integration, signed with its webhook secret."""
    integration = (
        Integration.objects.present()
        .filter(pk=pk, enabled=True)
        .select_related("workspace")
        .first()
    )
    # A body sent chunked got 411 from iofold.lib.bodies.LengthRequiredMiddleware.
    try:
        body = request.body
    except RequestDataTooBig:
        return _reject("The request body is too large.", status=413)
    try:
        verify_signature(
            secret=integration.webhook_secret if integration else "",
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            signature=request.headers.get(SIGNATURE_HEADER),
            body=body,
            now=time.time(),
        )
    except WebhookRejected as exc:
        logger.info("webhook rejected integration=%s reason=%s", pk, exc.message)
        return _reject(NOT_AUTHENTIC)
    try:
        payload = jsontext.loads(body)
    except jsontext.UnsafeJSON as exc:
        return _reject(f"The body cannot be accepted: {exc}.", status=400)
    except ValueError:
        return _reject("The body is not JSON.", status=400)
    if isinstance(payload, dict) and isinstance(payload.get("traces"), list):
        items = payload["traces"]
    elif isinstance(payload, list):
        items = payload
    elif isinstance(payload, dict) and payload:
        items = [payload]
    else:
        return _reject('Send a trace object, a list of traces or {"traces": [...]}.', status=400)
    if len(items) > MAX_API_TRACES:
        return _reject(f"At most {MAX_API_TRACES} traces per request.", status=413)
    try:
        admit_traces(workspace=integration.workspace, count=len(items))
    except RateLimited as exc:
        response = _reject(exc.message, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    out = ingest_webhook(integration=integration, items=items)
    status = 400 if out["failed"] == out["received"] else 200
    return JsonResponse(out, status=status)


@never_cache  # it shows the new secret
@workspace_view(manage=True)
def regenerate_secret(request, pk: int):
    """Make a new webhook secret (POST), then show it once, with how to sign requests."""
    integration = get_object_or_404(
        Integration.objects.for_workspace(request.workspace).present(), pk=pk
    )
    key = f"webhook_secret:{integration.pk}"
    if request.method == "POST":
        had_secret = bool(integration.webhook_secret)
        if had_secret and not confirmed(request):
            return ask_first(
                request,
                question="Make a new webhook secret?",
                detail="The current one stops working.",
                button="Make a new secret",
                back_url=reverse("integrations:detail", args=[request.workspace.slug, pk]),
            )
        # Shown after a redirect: a refresh re-sending the form would replace the secret
        # just copied with another one.
        keep_to_show(request, key, regenerate_webhook_secret(integration=integration))
        if had_secret:
            messages.warning(request, "The old webhook secret no longer works.")
        return redirect("integrations:webhook_secret", slug=request.workspace.slug, pk=pk)
    secret = take_to_show(request, key)
    if secret is None:
        messages.info(
            request,
            "A webhook secret is shown only once, when it is made. Regenerate it for a new one.",
        )
        return redirect("integrations:detail", slug=request.workspace.slug, pk=pk)
    url = request.build_absolute_uri(f"/api/v1/integrations/{integration.pk}/webhook")
    ctx = {"integration": integration, "secret": secret, "webhook_url": url}
    return render(request, "integrations/webhook_secret.html", ctx)
