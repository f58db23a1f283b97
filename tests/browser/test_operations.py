"""The operations dashboard's charts as drawn: they stretch to the page's width."""

import pytest

from evals.models import Eval, EvalExecution
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
