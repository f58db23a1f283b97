"""Activating a version that found no rule asks first: it would judge every trace alike."""

import pytest
from playwright.sync_api import expect

from evals.models import Eval
from tests.evals.builders import ALWAYS_PASS_CODE, REFUSAL_CODE, labelled_set, make_eval

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NO_RULE = {
    "training": {"labelled": 4, "kappa": 0.0, "balanced_accuracy": 0.5, "accuracy": 0.75},
    "heldout": {"labelled": 4, "kappa": 0.0, "balanced_accuracy": 0.5, "accuracy": 0.75},
    "no_reliable_eval": True,
}


@pytest.fixture
def versions(workspace, owner):
    eval_set, _ = labelled_set(workspace, good=3, bad=1, user=owner)
    found = make_eval(eval_set, version=1, code=REFUSAL_CODE, agreement=1.0)
    none_found = make_eval(
        eval_set, version=2, parent=found, code=ALWAYS_PASS_CODE, metrics=NO_RULE
    )
    return found, none_found


def _status(eval):
    eval.refresh_from_db()
    return eval.status


def test_activating_a_version_without_a_rule_asks_first(logged_in_page, owner, versions):
    found, none_found = versions
    page = logged_in_page(owner)
    page.goto(none_found.get_absolute_url())
    expect(page.get_by_test_id("no-reliable-eval")).to_be_visible()

    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_test_id("activate").click()
    expect(page.get_by_test_id("status")).to_have_text("Draft")
    assert "gives every trace the same verdict" in asked[0]
    assert _status(none_found) == Eval.Status.DRAFT

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("activate").click()
    expect(page.get_by_test_id("status")).to_have_text("Active")
    assert _status(none_found) == Eval.Status.ACTIVE


def test_the_versions_list_asks_only_for_the_version_without_a_rule(
    logged_in_page, owner, versions
):
    found, none_found = versions
    page = logged_in_page(owner)
    page.goto(f"/w/{found.workspace.slug}/evals/sets/{found.eval_set_id}/versions/")
    asked = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_test_id("activate-2").click()
    page.wait_for_load_state()
    assert asked and _status(none_found) == Eval.Status.DRAFT

    # A version that found a rule activates at once, without a question.
    page.get_by_test_id("activate-1").click()
    expect(page.get_by_test_id("activate-1")).to_have_count(0)
    assert len(asked) == 1 and _status(found) == Eval.Status.ACTIVE


def test_deploying_a_refinement_without_a_rule_asks_first(logged_in_page, owner, versions):
    found, none_found = versions
    page = logged_in_page(owner)
    page.goto(f"/w/{found.workspace.slug}/evals/{none_found.pk}/compare/")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_test_id("deploy").click()
    expect(page.get_by_test_id("deploy")).to_be_visible()
    assert asked and "gives every trace the same verdict" in asked[0]
    assert _status(none_found) == Eval.Status.DRAFT
