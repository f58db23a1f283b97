"""Times on pages: one format (``2026-11-20 14:05``, UTC), whatever the page."""

import datetime as dt

import pytest
from django.urls import reverse

from evals.models import Eval
from integrations import services as integration_services
from integrations.adapters.base import as_utc
from tests.evals.builders import two_judged_versions

pytestmark = pytest.mark.django_db

ACTIVE_FROM = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def test_an_integration_says_up_to_when_it_synced_in_the_one_format(login, owner, workspace):
    integration = integration_services.create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key="pk-lf-1",
        secret_key="sk-lf-1",
    )
    integration.watermark = ACTIVE_FROM
    integration.save(update_fields=["watermark"])
    url = reverse("integrations:detail", args=[workspace.slug, integration.pk])
    page = login(owner).get(url).content.decode()
    assert "<dt>Synced up to</dt><dd>2026-03-28 22:30 UTC</dd>" in page


def test_a_formerly_active_version_says_since_when_in_the_one_format(login, owner, workspace):
    eval_set, _, v1, v2 = two_judged_versions(workspace)
    Eval.objects.filter(pk=v1.pk).update(status="draft", activated_at=ACTIVE_FROM)
    url = reverse("evals:versions", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    page = login(owner).get(url).content.decode()
    assert 'title="Was active from 2026-03-28 22:30"' in page


@pytest.mark.parametrize(
    ("minutes", "said"),
    [
        (15, "every 15 minutes"),
        (90, "every 90 minutes"),
        (120, "every 2 hours"),
        (1440, "every day"),
    ],
)
def test_a_schedule_says_how_often_it_runs_in_words(login, owner, workspace, minutes, said):
    """The pages said "every 1440 minutes" and "Syncs every 1440 min" for what the form
    offers as "Every day"."""
    integration = integration_services.create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key="pk-lf-1",
        secret_key="sk-lf-1",
        sync_interval_minutes=minutes,
    )
    client = login(owner)
    detail = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    listing = client.get(reverse("integrations:list", args=[workspace.slug]))

    assert f"<dt>Schedule</dt><dd>{said}</dd>" in detail.content.decode()
    assert f"Syncs {said}</td>" in listing.content.decode()


def test_a_traces_time_says_its_zone(login, owner, workspace):
    """Times are UTC throughout (there is no per-user zone): the pages said "14:05" and left
    a reader in Tokyo or San Francisco to guess whose 14:05."""
    from tests.traces.factories import TraceFactory, trace_data

    trace = TraceFactory(workspace=workspace, data=trace_data(1), timestamp=ACTIVE_FROM)
    client = login(owner)
    listing = client.get(reverse("traces:list", args=[workspace.slug])).content.decode()
    detail = client.get(reverse("traces:detail", args=[workspace.slug, trace.pk])).content.decode()

    assert '<th>Time <small class="muted">(UTC)</small></th>' in listing
    assert "<p>2026-03-28 22:30 UTC · " in detail


def test_the_monthly_judge_budget_counts_the_calendar_month_in_utc(workspace):
    from decimal import Decimal

    from django.utils import timezone

    from evals.judging.spend import month_start, month_to_date
    from evals.models import EvalRun
    from tests.evals.builders import labelled_set, make_eval

    eval_set, _ = labelled_set(workspace)
    eval = make_eval(eval_set, version=1)
    start = month_start()
    assert (start.day, start.hour, start.minute, start.utcoffset()) == (1, 0, 0, dt.timedelta(0))
    for created, cost in ((start - dt.timedelta(seconds=1), 5), (start, 2), (timezone.now(), 1)):
        run = EvalRun.objects.create(
            workspace=workspace, eval=eval, trigger="manual", cost_usd=cost
        )
        EvalRun.objects.filter(pk=run.pk).update(created_at=created)

    assert month_to_date(workspace=workspace) == Decimal(3)


@pytest.mark.parametrize(
    ("since", "said"),
    [
        ("2026-11-20", "since 2026-11-20"),
        ("2026-11-20T00:00:00+05:30", "since 2026-11-19 18:30 UTC"),
        ("2026-11-20T09:15:00Z", "since 2026-11-20 09:15 UTC"),
    ],
)
def test_an_integration_says_from_when_it_syncs_to_the_minute_it_was_given(
    login, owner, workspace, since, said
):
    """A start time with a time of day (the API takes any) read as its date alone: traces
    from 00:00 to 09:15 that day were left out, and the page said "since 2026-11-20"."""
    integration = integration_services.create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key="pk-lf-1",
        secret_key="sk-lf-1",
        # A date alone is midnight UTC, as the form's date field gives.
        since_date=as_utc(dt.datetime.fromisoformat(since)),
    )
    url = reverse("integrations:detail", args=[workspace.slug, integration.pk])
    page = login(owner).get(url).content.decode()
    assert f"{said}\n" in page
