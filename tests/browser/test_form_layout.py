"""Checkboxes sit beside their own label, with their help below and clear of the label."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The box's top and left edges against its label's: in the label's first line, at its start.
BOX_AND_LABEL = """el => {
  const box = el.getBoundingClientRect(), label = el.labels[0].getBoundingClientRect();
  return {top: box.top - label.top, left: box.left - label.left};
}"""


def test_automation_checkboxes_start_their_own_labels(logged_in_page, owner, workspace):
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/evals/automation/")
    for label in (
        "Refine evals by themselves",
        "Promote a refined version by itself when it wins beyond noise",
        "Make a new signing secret",
    ):
        box = page.get_by_label(label)
        expect(box).to_be_visible()
        offset = box.evaluate(BOX_AND_LABEL)
        assert -4 <= offset["top"] <= 12, (label, offset)
        assert abs(offset["left"]) <= 4, (label, offset)


def test_help_under_a_switch_does_not_overlap_it(logged_in_page, owner, workspace):
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/new/")
    switch = page.locator("input[name=score_to_langfuse]")
    help_text = page.get_by_text("As scores to Langfuse and feedback to LangSmith")
    expect(help_text).to_be_visible()
    switch_box, help_box = switch.bounding_box(), help_text.bounding_box()
    assert help_box["y"] >= switch_box["y"] + switch_box["height"]
