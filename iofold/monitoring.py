"""What an operator watches: the /metrics endpoint, request timing and ids, task metrics.

In-process counters and histograms live in ``iofold.lib.metrics``; here are the places
that record them for every request and every Celery task, and the gauges read from the
database when Prometheus scrapes (sync lag per integration, score delivery, the backlog of
queued runs, drifting evals). Those read across workspaces on purpose: /metrics is the
operator's view of the whole installation, guarded by a token or a network allow-list, and
its labels carry ids and slugs, never trace content or secrets.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db.models import Count, Min
from django.http import HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.core import GaugeMetricFamily

from iofold.lib import logcontext, metrics

logger = logging.getLogger(__name__)

UNMATCHED = "<unmatched>"
# Drift reads every active eval's executions: computed at most this often, shared.
DRIFT_CACHE_SECONDS = 300


# --- requests --------------------------------------------------------------------------------


class RequestMetricsMiddleware:
    """Time each request by its URL name and status, and give it an id for the logs.

    The URL name (``traces:list``), not the path, labels the histogram: paths carry ids
    and slugs, which would make a series per object. The id comes from a proxy's
    ``X-Request-ID`` when it is plain, else a new one, and goes back in the response.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = (
            logcontext.accept_request_id(request.headers.get("X-Request-ID")) or uuid.uuid4().hex
        )
        token = logcontext.request_id.set(request_id)
        # For what Django logs after the middleware has returned (a 4xx's warning).
        request.request_id = request_id
        start = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            logcontext.request_id.reset(token)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.route) if match else UNMATCHED
        metrics.HTTP_REQUEST_SECONDS.labels(
            view, request.method, str(response.status_code)
        ).observe(time.perf_counter() - start)
        response["X-Request-ID"] = request_id
        return response


# --- gauges read at scrape time --------------------------------------------------------------


class DatabaseCollector:
    """Gauges computed from the rows when Prometheus scrapes."""

    def collect(self):
        now = timezone.now()
        for part in (self._integrations, self._backlog, self._drift):
            try:
                yield from part(now)
            except Exception:
                # A slow or failing part must not cost the scrape the other metrics.
                logger.exception("metrics collection failed part=%s", part.__name__)

    def _integrations(self, now):
        from integrations.adapters import get_adapter_class
        from integrations.models import Integration

        labels = ["integration", "kind", "workspace", "mode"]
        lag = GaugeMetricFamily(
            "iofold_integration_sync_lag_seconds",
            "Seconds since an enabled integration last synced (pulled) or received traces.",
            labels=labels,
        )
        failing = GaugeMetricFamily(
            "iofold_integration_failing",
            "1 when the integration's last sync or receive failed (error or rejected key).",
            labels=labels,
        )
        push_failures = GaugeMetricFamily(
            "iofold_integration_score_push_failures",
            "Verdicts whose delivery to the source failed since its last clean delivery.",
            labels=labels,
        )
        # One being deleted stopped syncing on request: its lag would only grow.
        rows = (
            Integration.objects.present()
            .filter(enabled=True)
            .values_list(
                "pk",
                "kind",
                "workspace__slug",
                "status",
                "last_synced_at",
                "created_at",
                "score_push_failures",
            )
        )
        for pk, kind, slug, status, synced, created, failures in rows:
            try:
                mode = "pull" if get_adapter_class(kind).capabilities.pull else "receive"
            except LookupError:
                continue
            values = [str(pk), kind, slug, mode]
            lag.add_metric(values, (now - (synced or created)).total_seconds())
            failing.add_metric(
                values, 1.0 if status in (Integration.Status.ERROR, "auth_failed") else 0.0
            )
            push_failures.add_metric(values, float(failures))
        yield from (lag, failing, push_failures)

    def _backlog(self, now):
        from evals.models import EvalRun, Generation
        from integrations.models import SyncRun
        from iofold.lib.runs import RunStatus

        queued = GaugeMetricFamily(
            "iofold_runs_queued",
            "Background runs waiting for a worker, by kind (sync, generation, eval).",
            labels=["kind"],
        )
        oldest = GaugeMetricFamily(
            "iofold_runs_oldest_queued_seconds",
            "Age of the oldest run still waiting for a worker, by kind (0 when none waits).",
            labels=["kind"],
        )
        from evals.execution.breaker import held_runs
        from evals.models import ContinuousPause

        for kind, model in (("sync", SyncRun), ("generation", Generation), ("eval", EvalRun)):
            waiting = model.objects.filter(status=RunStatus.QUEUED)
            if model is EvalRun:
                # A paused eval set's runs wait for its resume, not for a worker.
                waiting = waiting.exclude(held_runs())
            row = waiting.aggregate(n=Count("pk"), first=Min("created_at"))
            queued.add_metric([kind], row["n"])
            age = (now - row["first"]).total_seconds() if row["first"] else 0.0
            oldest.add_metric([kind], age)
        paused = GaugeMetricFamily(
            "iofold_eval_sets_paused",
            "Eval sets whose continuous evaluation the circuit breaker paused, by workspace.",
            labels=["workspace"],
        )
        for slug, count in (
            ContinuousPause.objects.values_list("workspace__slug")
            .annotate(n=Count("pk"))
            .order_by("workspace__slug")
        ):
            paused.add_metric([slug], count)
        yield from (queued, oldest, paused)

    def _drift(self, now):
        drifting = GaugeMetricFamily(
            "iofold_evals_drifting",
            "Active evals whose agreement with recent labels fell below their agreement at "
            "activation by more than IOFOLD_DRIFT_MARGIN, by workspace.",
            labels=["workspace"],
        )
        for slug, count in cache.get_or_set(
            "metrics:drift", _drifting_by_workspace, DRIFT_CACHE_SECONDS
        ).items():
            drifting.add_metric([slug], count)
        yield drifting


def _drifting_by_workspace() -> dict[str, int]:
    from evals.execution.drift import workspace_drift
    from evals.models import Eval
    from workspaces.models import Workspace

    with_active = Eval.objects.active().values_list("workspace_id", flat=True).distinct()
    return {
        workspace.slug: sum(1 for drift in workspace_drift(workspace=workspace) if drift.drifting)
        for workspace in Workspace.objects.filter(pk__in=with_active)
    }


# --- the endpoint ----------------------------------------------------------------------------


def scrape_allowed(request) -> bool:
    """A bearer token equal to IOFOLD_METRICS_TOKEN, or a client address in the allowed networks."""
    token = settings.IOFOLD_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header.removeprefix("Bearer ").encode(), token.encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.IOFOLD_METRICS_ALLOWED_NETWORKS)


@login_not_required
@never_cache
@require_GET
def metrics_view(request):
    """Prometheus exposition of every process's metrics and the database gauges."""
    if not scrape_allowed(request):
        return HttpResponseForbidden(
            "Send Authorization: Bearer <IOFOLD_METRICS_TOKEN>, or scrape from an address "
            "in IOFOLD_METRICS_ALLOWED_NETWORKS.\n",
            content_type="text/plain",
        )
    body, content_type = metrics.render([DatabaseCollector()])
    return HttpResponse(body, content_type=content_type)
