"""Checkboxes sit beside their own label, with their help below and clear of the label."""

import pytest
from playwright.sync_api import expect

from traces.services import create_eval_set

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


def test_eval_set_form_shows_only_the_fields_of_the_chosen_options(
    logged_in_page, owner, workspace
):
    """The idle minutes matter only for conversations, the filter only for a filtered set:
    each is hidden (by CSS, still in the form) while the other option is chosen."""
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/new/")
    idle = page.locator("input[name=conversation_idle_minutes]")
    trace_filter = page.locator("input[name=saved_filter]")
    # The defaults: traces, hand-picked.
    expect(idle).to_be_hidden()
    expect(trace_filter).to_be_hidden()

    page.get_by_label("Conversation", exact=True).check()
    expect(idle).to_be_visible()
    page.get_by_label("Trace", exact=True).check()
    expect(idle).to_be_hidden()

    page.get_by_label("Saved trace filter").check()
    expect(trace_filter).to_be_visible()
    trace_filter.fill("tag=checkout")
    page.get_by_label("Hand-picked traces").check()
    expect(trace_filter).to_be_hidden()
    expect(page.locator(".for-filter")).to_have_count(1)  # hidden, not removed


def test_eval_set_form_shows_a_hidden_field_that_has_an_error(logged_in_page, owner, workspace):
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/new/")
    page.locator("input[name=name]").fill("Refunds")
    page.locator("textarea[name=criteria]").fill("Good answers.")
    page.get_by_label("Saved trace filter").check()
    page.locator("input[name=saved_filter]").fill("date_from=yesterday")
    page.get_by_label("Hand-picked traces").check()
    page.get_by_test_id("evalset-form").locator("button[type=submit]").last.click()
    expect(page.get_by_text("is not a date")).to_be_visible()
    expect(page.locator("input[name=saved_filter]")).to_be_visible()


def test_buttons_with_a_tooltip_keep_their_whole_border(logged_in_page, owner, workspace):
    """Archive and Judge template carry a tooltip; their outline is closed at the bottom too."""
    eval_set = create_eval_set(workspace=workspace, name="Refunds", criteria="Cites the policy.")
    page = logged_in_page(owner)
    page.goto(eval_set.get_absolute_url())
    for button in (
        page.get_by_role("button", name="Archive"),
        page.get_by_test_id("judge-template-link"),
    ):
        expect(button).to_be_visible()
        border = button.evaluate(
            "el => { const s = getComputedStyle(el); return [s.borderTopWidth,"
            " s.borderTopStyle, s.borderBottomWidth, s.borderBottomStyle]; }"
        )
        assert border[2:] == border[:2] == ["1px", "solid"], border


@pytest.mark.parametrize("path", ["settings/", "members/"])
def test_a_grouped_button_keeps_its_label_on_one_line(logged_in_page, owner, workspace, path):
    """Delete workspace, Send invitation: as tall as the field beside them."""
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/{path}")
    group = page.locator("fieldset[role=group]")
    field, button = group.locator("input").first, group.locator("button")
    expect(button).to_be_visible()
    assert abs(button.bounding_box()["height"] - field.bounding_box()["height"]) <= 2
