"""A conversation in Chromium: open it, expand a turn's steps, label it by keyboard."""

import pytest
from playwright.sync_api import expect

from iofold.pipeline import ingest_traces
from tests.traces import tau2
from traces.models import Conversation, EvalSet, Feedback
from traces.services import add_traces_to_eval_set, create_eval_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_open_expand_and_label_a_conversation(logged_in_page, workspace, owner):
    records = tau2.load(limit=2)
    turns = [turn for record in records for turn in tau2.split(record)]
    ingest_traces(workspace=workspace, source="upload", traces=turns)
    conversation = Conversation.objects.for_workspace(workspace).get(external_id=records[0]["id"])
    later_turn = conversation.turns.order_by("-timestamp").first()
    eval_set = create_eval_set(
        workspace=workspace,
        name="Retail chats",
        criteria="The agent did what the customer asked, within the policy.",
        unit=EvalSet.Unit.CONVERSATION,
        target_labels=2,
        created_by=owner,
    )
    # Picking any turn picks its whole conversation.
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[later_turn.pk])

    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/")
    page.get_by_test_id("group-by-conversation").click()
    page.get_by_role("link", name=conversation.external_id).click()
    expect(page.get_by_test_id("turn")).to_have_count(conversation.turn_count)
    first_user = next(s["output"] for s in records[0]["steps"] if s["name"] == "user")
    expect(page.get_by_test_id("turn").first).to_contain_text(first_user[:40])

    # Expanding a turn loads its steps, tool calls included.
    second = page.get_by_test_id("turn").nth(1)
    expect(second.get_by_test_id("step")).to_have_count(0)
    second.get_by_test_id("turn-steps").locator("summary").click()
    expect(second.get_by_test_id("step").first).to_be_visible()
    expected_steps = conversation.turns.order_by("timestamp", "id")[1].step_count
    expect(second.get_by_test_id("step")).to_have_count(expected_steps)

    # Label the whole conversation from the review, by keyboard, with a note.
    page.get_by_test_id("review-conversation").click()
    expect(page.get_by_test_id("conversation-summary")).to_contain_text(
        f"{conversation.turn_count} turns"
    )
    expect(page.get_by_test_id("progress")).to_have_text(
        "0 conversations labelled good or bad, of the 2 targeted"
    )
    # The card arrives by htmx: keys pressed before it are not the card's (the "n" of
    # "confirmation" would be the one that opens the note).
    note = page.locator("#note")
    expect(note).to_be_visible()
    page.keyboard.press("n")
    expect(note).to_be_focused()
    page.keyboard.type("Modified the order without asking for confirmation")
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    expect(page.get_by_test_id("progress")).to_have_text(
        "1 conversation labelled good or bad, of the 2 targeted"
    )
    label = Feedback.objects.get(eval_set=eval_set, user=owner)
    assert label.trace_id == conversation.anchor_id
    assert (label.rating, label.note) == (
        "negative",
        "Modified the order without asking for confirmation",
    )
