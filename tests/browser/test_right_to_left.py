"""Arabic and Hebrew read right to left wherever a trace's, a reviewer's or a source's text
is shown, without turning the page's own English around them."""

import pytest
from playwright.sync_api import expect

from tests.traces.factories import TraceFactory, trace_data
from traces.services import create_eval_set, record_feedback

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARABIC = "تم إرسال المبلغ المسترد، هل تحتاج شيئا آخر؟"
NOTE = "الإجابة صحيحة ولكنها طويلة."


def test_arabic_text_reads_right_to_left_and_leaves_the_page_left_to_right(
    logged_in_page, owner, workspace
):
    data = trace_data(1)
    data["input"] = [{"role": "user", "content": "Where is my refund?"}]
    data["output"] = {"role": "assistant", "content": ARABIC}
    trace = TraceFactory(workspace=workspace, data=data)
    eval_set = create_eval_set(
        workspace=workspace, name="Arabic", criteria="Answers.", trace_ids=[trace.pk]
    )
    record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive", note=NOTE)
    page = logged_in_page(owner)

    page.goto(f"/w/{workspace.slug}/traces/{trace.pk}/")
    answer = page.get_by_test_id("message").filter(has_text=ARABIC).locator("p").first
    question = page.get_by_test_id("message").filter(has_text="Where is my refund?")
    expect(answer).to_be_visible()
    assert answer.evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert question.locator("p").first.evaluate("el => getComputedStyle(el).direction") == "ltr"
    note = page.locator("bdi", has_text=NOTE)
    # The note keeps its own direction; the English sentence it sits in keeps the page's.
    assert note.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
    assert note.evaluate("el => getComputedStyle(el.parentElement).direction") == "ltr"

    page.goto(f"/w/{workspace.slug}/traces/eval-sets/{eval_set.pk}/review/?trace={trace.pk}")
    expect(page.get_by_test_id("review-card")).to_be_visible()
    box = page.get_by_test_id("note")
    assert box.evaluate("el => getComputedStyle(el).direction") == "rtl"  # holds NOTE
    shown = page.get_by_test_id("review-card").locator("bdi", has_text=NOTE)
    assert shown.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
