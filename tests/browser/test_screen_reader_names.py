"""What a screen reader says of a form's fields, and what a keyboard reaches, in Chromium's
own accessibility tree (not the HTML as written)."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_field_is_named_by_its_label_alone_and_its_help_is_read_after(
    logged_in_page, owner, workspace
):
    """Help text inside the <label> was read as part of the name: "What makes a trace good?
    In plain words, what makes a trace good? The eval is written from…"."""
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/new/")

    criteria = page.get_by_role("textbox", name="What makes a trace good?", exact=True)
    expect(criteria).to_have_accessible_description(re.compile(r"^In plain words"))
    switch = page.get_by_role(
        "switch", name="Send eval verdicts back to the traces' sources", exact=True
    )
    expect(switch).to_have_accessible_description(re.compile(r"^As scores to Langfuse"))

    page.goto("/w/")
    name = page.get_by_role("textbox", name="Name", exact=True)
    expect(name).to_have_accessible_description(re.compile(r"^Your team or product"))


def test_a_wide_table_on_a_phone_scrolls_from_the_keyboard(logged_in_page, owner, workspace):
    """The table's wrapper scrolls sideways; without a tab stop on it, a keyboard user could
    not reach the columns off screen (Safari puts no scroll box in the tab order)."""
    page = logged_in_page(owner)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/w/{workspace.slug}/members/")
    region = page.get_by_role("region", name="Members", exact=True)
    assert region.evaluate("e => e.scrollWidth > e.clientWidth"), "the table fits: no test"

    page.get_by_role("heading", name="Members").click()  # start the tab sequence above it
    for _ in range(30):
        page.keyboard.press("Tab")
        if region.evaluate("e => e === document.activeElement"):
            break
    expect(region).to_be_focused()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("e => e.scrollLeft > 0", arg=region.element_handle())


def test_the_note_box_is_named_note_and_its_shortcut_is_read_after(
    logged_in_page, owner, workspace
):
    """The shortcut key sat inside the note box's <label>: its name was read "Note n"."""
    from tests.traces.factories import TraceFactory, trace_data
    from traces.services import add_traces_to_eval_set, create_eval_set

    trace = TraceFactory(workspace=workspace, data=trace_data(1))
    eval_set = create_eval_set(
        workspace=workspace, name="Answers", criteria="Answers the question.", created_by=owner
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/{eval_set.pk}/review/")

    note = page.get_by_role("textbox", name="Note", exact=True)
    expect(note).to_have_accessible_description("Why? The eval learns from notes too. Shortcut: n")
    page.keyboard.press("n")
    expect(note).to_be_focused()
