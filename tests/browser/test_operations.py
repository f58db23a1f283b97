"""Operations as drawn: the dashboard's charts stretch to the page's width; a failed sync
is one notice on its integration's page."""

import pytest
from playwright.sync_api import expect

from evals.models import Eval, EvalExecution
from integrations import services
from tests.traces.factories import EvalSetFactory, TraceFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_pass_rate_of_one_day_is_a_round_dot_with_its_value_said(
    workspace, owner, logged_in_page
):
    eval_set = EvalSetFactory(workspace=workspace)
    active = Eval.objects.create(
        workspace=workspace, eval_set=eval_set, version=1, code="", status=Eval.Status.ACTIVE
    )
    for passed in (True, True, True, False):
        trace = TraceFactory(workspace=workspace)
        EvalExecution.objects.create(workspace=workspace, eval=active, trace=trace, passed=passed)
    page = logged_in_page(owner)

    page.goto(f"/w/{workspace.slug}/evals/dashboard/")

    chart = page.get_by_test_id("pass-rate-chart")
    box = chart.locator("circle, .dot").bounding_box()
    # The chart is ~1,100 px wide for 600 units: a circle there was drawn twice as wide as tall.
    assert abs(box["width"] - box["height"]) < 1, box
    assert "75% over 4, the only day so far" in chart.locator("figcaption").inner_text()


def test_a_failed_sync_is_one_red_notice_on_the_integration_page(workspace, owner, logged_in_page):
    integration = services.create_integration(
        workspace=workspace,
        name="Langfuse",
        host="http://127.0.0.1:9",  # nothing listens: the connection is refused
        public_key="pk-lf-test",
        secret_key="sk-lf-test",
    )
    adapter = services.get_adapter(integration, sleep=lambda seconds: None)  # no backoff
    services.run_sync(run_id=services.start_sync(integration=integration).pk, adapter=adapter)
    page = logged_in_page(owner)

    page.goto(f"/w/{workspace.slug}/integrations/{integration.pk}/")

    failed = page.get_by_test_id("sync-error")
    expect(failed).to_contain_text("Sync failed: Could not reach http://127.0.0.1:9")
    # A notice of the page's own, styled on this page too (its rules were in other apps' CSS).
    background = failed.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(255, 235, 238)"
    expect(page.get_by_test_id("integration-error")).to_have_count(0)  # not said twice


def test_the_drift_page_names_the_traces_the_eval_errored_on(workspace, owner, logged_in_page):
    from django.utils import timezone

    from traces.models import Feedback

    eval_set = EvalSetFactory(workspace=workspace)
    active = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="",
        status=Eval.Status.ACTIVE,
        agreement=0.9,
        activated_at=timezone.now(),
    )
    for passed in (True, True, False, None):
        trace = TraceFactory(workspace=workspace)
        Feedback.objects.create(
            workspace=workspace, trace=trace, eval_set=eval_set, user=owner, rating="positive"
        )
        EvalExecution.objects.create(
            workspace=workspace,
            eval=active,
            trace=trace,
            passed=passed,
            error="" if passed is not None else "Timed out after 5 s",
        )
    page = logged_in_page(owner)

    page.goto(f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/drift/")

    expect(page.get_by_test_id("drift-current")).to_have_text("67%")  # 2 of 3 with a verdict
    errored = page.get_by_test_id("drift-errored")
    expect(errored).to_have_text("1 trace errored and is not counted")
    page.get_by_role("link", name=f"#{trace.pk}").click()
    expect(page.locator("body")).to_contain_text("Timed out after 5 s")
