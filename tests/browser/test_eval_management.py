"""Generate an eval, find where it contradicts new labels, refine it, deploy, roll back, export.

Generation, the test run and the refinement all run on a real Celery worker.
"""

import re

import pytest
from playwright.sync_api import expect

from evals.models import Eval
from tests.traces.factories import TraceFactory, trace_data
from traces.models import Feedback
from traces.services import create_eval_set

pytestmark = [pytest.mark.browser, pytest.mark.worker]


def _label(eval_set, user, n, rating, *, output, error=None, note=""):
    trace = TraceFactory(
        workspace=eval_set.workspace,
        data=trace_data(n, output=output, error=error),
        has_error=error is not None,
    )
    Feedback.objects.create(
        workspace=eval_set.workspace,
        trace=trace,
        eval_set=eval_set,
        user=user,
        rating=rating,
        note=note,
    )
    return trace


@pytest.fixture
def refund_set(workspace, owner):
    """Six good answers and six refusals: the offline synthesiser learns "refusals are bad"."""
    eval_set = create_eval_set(
        workspace=workspace,
        name="Refund answers",
        criteria="The assistant answers the refund question; it must not refuse.",
        target_labels=10,
        created_by=owner,
    )
    for n in range(6):
        _label(eval_set, owner, n, "positive", output=f"Your refund for order {n} is on its way.")
    for n in range(10, 16):
        _label(eval_set, owner, n, "negative", output="I cannot help with that.")
    return eval_set


def test_generate_find_a_contradiction_refine_deploy_roll_back_export(
    celery_worker_process, transactional_db, logged_in_page, workspace, owner, refund_set, tmp_path
):
    page = logged_in_page(owner)
    slug = workspace.slug

    # Generate v1 on the worker; it agrees with every label and becomes the active eval.
    page.goto(refund_set.get_absolute_url())
    page.get_by_test_id("generate").get_by_role("button").click()
    expect(page.get_by_test_id("generation-result")).to_be_visible(timeout=90_000)
    page.get_by_role("button", name="Open the eval").click()
    expect(page.get_by_test_id("status")).to_have_text("Active")
    v1 = Eval.objects.get(eval_set=refund_set, version=1)

    # Later labels: answers whose order lookup failed are bad too; v1 cannot know that.
    for n in range(20, 24):
        _label(
            refund_set,
            owner,
            n,
            "negative",
            output=f"Your refund for order {n} is on its way.",
            error="Timeout calling lookup_order",
            note="The order lookup failed; the answer is made up.",
        )

    # Test v1 again on the worker: the page follows the run and shows the new figures.
    page.get_by_test_id("test-again").click()
    expect(page.get_by_test_id("run")).to_contain_text("on 16 traces", timeout=60_000)
    expect(page.get_by_test_id("metrics")).to_contain_text("16")

    # The matrix shows the four contradictions; drill down on one.
    page.goto(f"/w/{slug}/evals/sets/{refund_set.pk}/matrix/")
    expect(page.get_by_test_id("contradictions-v1")).to_contain_text("4 wrong")
    page.get_by_test_id("only-disagreements").check()
    expect(page.get_by_test_id("matrix")).to_contain_text("4 labelled traces with a disagreement")
    page.locator('button.cell[data-state="contradict"]').first.click()
    drill = page.get_by_test_id("cell-detail")
    expect(drill).to_contain_text("contradicts the label")
    expect(drill).to_contain_text("The order lookup failed")
    expect(page.get_by_test_id("cell-reason")).to_contain_text("Judged good")

    # Refine v1 on the worker; the refinement page moves on to the before / after page.
    page.goto(f"/w/{slug}/evals/{v1.pk}/")
    page.get_by_test_id("refine").click()
    page.wait_for_url(re.compile(r"/evals/\d+/compare/$"), timeout=90_000)
    expect(page.get_by_test_id("contradictions-v1")).to_contain_text("4")
    expect(page.get_by_test_id("contradictions-v2")).to_contain_text("0")
    expect(page.get_by_test_id("compare-rows")).to_contain_text("✗ bad")
    v2 = Eval.objects.get(eval_set=refund_set, version=2)
    assert v2.parent_id == v1.pk

    # Deploy v2, then roll back to v1.
    page.get_by_test_id("deploy").click()
    expect(page.locator("body")).to_contain_text("Activated v2")
    expect(page.get_by_test_id("status")).to_have_text("Active")
    page.goto(f"/w/{slug}/evals/{v1.pk}/")
    expect(page.get_by_test_id("status")).to_have_text("Draft")
    page.get_by_test_id("activate").click()
    expect(page.locator("body")).to_contain_text("Rolled back from v2 to v1")
    expect(page.get_by_test_id("status")).to_have_text("Active")
    v2.refresh_from_db()
    assert v2.status == "draft"

    # Export v1 as a script that runs by itself.
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "refund-answers_v1.py"
    script = path.read_text()
    assert "\ndef eval_fn(trace" in script and "_iofold_main" in script
