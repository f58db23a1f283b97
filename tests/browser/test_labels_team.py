"""Labelling as a team in Chromium: edit a label (desktop and phone), label from the trace
page, import labels from a file and from Langfuse scores on the fake server."""

import json
import os
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from integrations import services as integration_services
from tests.conftest import wait_for
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401 - fixtures
from tests.traces.factories import TraceFactory, trace_data
from traces.models import Feedback, LabelChange, Trace
from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DOC_IMAGES = Path(settings.BASE_DIR) / "docs" / "img"


def shoot(page, name: str) -> None:
    """Save a screenshot for docs/user-guide.md when IOFOLD_DOC_SCREENSHOTS=1."""
    if os.environ.get("IOFOLD_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_IMAGES / f"{name}.png"), full_page=True)


@pytest.fixture
def labelled_set(workspace, owner):
    traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(3)]
    eval_set = create_eval_set(
        workspace=workspace,
        name="Support answers",
        criteria="The agent answers the question and uses the order tools.",
        created_by=owner,
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    return eval_set, traces


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_edit_a_label_from_the_label_table(logged_in_page, owner, labelled_set, viewport):
    eval_set, traces = labelled_set
    page = logged_in_page(owner)
    if viewport:
        page.set_viewport_size(viewport)
    page.goto(eval_set.get_absolute_url())
    row = page.locator(f'[data-testid="label-row"][data-trace="{traces[0].pk}"]')
    expect(row.get_by_test_id("row-label")).to_contain_text("good")
    # The table shows what the trace said, not only its name.
    expect(row).to_contain_text(trace_data(0)["input"]["question"][:30])
    row.get_by_test_id("edit-label").click()
    row.get_by_test_id("note").fill("Gave the wrong delivery date")
    row.get_by_test_id("rate-negative").click()
    expect(page.locator(".messages")).to_contain_text("Label changed to bad")
    row = page.locator(f'[data-testid="label-row"][data-trace="{traces[0].pk}"]')
    expect(row.get_by_test_id("row-label")).to_contain_text("bad")
    expect(row).to_contain_text("Gave the wrong delivery date")
    expect(page.get_by_test_id("label-history")).to_contain_text("changed")
    shoot(page, "label-edit-phone" if viewport else "label-edit")
    change = LabelChange.objects.get(action="changed")
    assert (change.rating_before, change.rating_after, change.changed_by) == (
        "positive",
        "negative",
        owner,
    )


def test_after_editing_a_label_far_down_the_table_the_row_is_still_in_view(
    logged_in_page, owner, workspace
):
    traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(30)]
    eval_set = create_eval_set(
        workspace=workspace,
        name="Long table",
        criteria="Answers.",
        trace_ids=[t.pk for t in traces],
    )
    for trace in traces:
        record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    page = logged_in_page(owner)
    page.goto(eval_set.get_absolute_url())
    trace = page.get_by_test_id("label-row").last.get_attribute("data-trace")
    row = page.locator(f'[data-testid="label-row"][data-trace="{trace}"]')
    row.get_by_test_id("edit-label").click()
    row.get_by_test_id("rate-negative").click()
    expect(row.get_by_test_id("row-label")).to_contain_text("bad")
    expect(row).to_be_in_viewport()


def test_edit_form_opens_in_the_row_and_escape_or_cancel_gives_the_focus_back(
    logged_in_page, owner, labelled_set
):
    """The row's form is fetched when Edit is pressed: the note box takes the focus, so a
    keyboard or screen-reader user lands in it; Escape or Cancel closes it back on Edit."""
    eval_set, traces = labelled_set
    page = logged_in_page(owner)
    page.goto(eval_set.get_absolute_url())
    row = page.locator(f'[data-testid="label-row"][data-trace="{traces[0].pk}"]')
    edit = row.get_by_test_id("edit-label")
    expect(row.get_by_test_id("rate-form")).to_have_count(0)
    edit.focus()
    page.keyboard.press("Enter")
    expect(row.get_by_test_id("note")).to_be_focused()
    expect(edit).to_have_attribute("aria-expanded", "true")
    page.keyboard.type("half a thought")
    page.keyboard.press("Escape")
    expect(row.get_by_test_id("rate-form")).to_have_count(0)
    expect(edit).to_be_focused()
    expect(edit).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("Enter")
    expect(row.get_by_test_id("note")).to_be_focused()
    row.get_by_test_id("cancel-edit").click()
    expect(row.get_by_test_id("rate-form")).to_have_count(0)
    expect(edit).to_be_focused()
    assert Feedback.objects.get(trace=traces[0]).note == ""


def test_edit_a_label_without_javascript(logged_in_page, owner, labelled_set):
    """Edit is a link: without JavaScript it opens the form as a page, which saves and
    comes back to the row."""
    eval_set, traces = labelled_set
    page = logged_in_page(owner, java_script_enabled=False)
    page.goto(eval_set.get_absolute_url())
    row = page.locator(f'[data-testid="label-row"][data-trace="{traces[0].pk}"]')
    row.get_by_test_id("edit-label").click()
    expect(page.get_by_test_id("fragment-page")).to_contain_text("Edit owner@")
    page.get_by_test_id("note").fill("No lookup of the order")
    page.get_by_test_id("rate-neutral").click()
    expect(page.locator(".messages")).to_contain_text("Label changed to neutral")
    assert page.url.endswith(f"#row-{traces[0].pk}")
    expect(row.get_by_test_id("row-label")).to_contain_text("neutral")
    expect(row).to_contain_text("No lookup of the order")


def test_label_from_the_trace_page_with_keys(logged_in_page, owner, labelled_set):
    eval_set, traces = labelled_set
    page = logged_in_page(owner)
    page.goto(f"/w/{eval_set.workspace.slug}/traces/{traces[1].pk}/")
    box = page.get_by_test_id("label-here")
    expect(box).to_contain_text("Support answers")
    page.keyboard.press("n")
    page.keyboard.type("Polite, but no order lookup")
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    expect(page.get_by_test_id("label-here")).to_contain_text("yours: ✗ bad")
    shoot(page, "trace-page-label")
    label = Feedback.objects.get(trace=traces[1], user=owner)
    assert (label.rating, label.note) == ("negative", "Polite, but no order lookup")


def test_arrow_keys_scroll_the_trace_page_and_work_its_controls_without_labelling(
    logged_in_page, owner, labelled_set
):
    """Arrows label on the review card only; on the trace page they scroll, and a focused
    select takes its own keys."""
    eval_set, traces = labelled_set
    page = logged_in_page(owner)
    page.goto(f"/w/{eval_set.workspace.slug}/traces/{traces[1].pk}/")
    expect(page.get_by_test_id("label-here")).to_contain_text("Support answers")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)  # a smooth scroll, or the form's post had it labelled
    assert page.evaluate("() => window.scrollY") > 0
    for key in ("ArrowRight", "ArrowLeft"):
        page.keyboard.press(key)
    page.locator("select[name=reviewer]").focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("1")
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("label-here")).not_to_contain_text("yours")
    assert not Feedback.objects.filter(trace=traces[1]).exists()


def test_import_labels_from_a_file(logged_in_page, owner, workspace, tmp_path):
    eval_set = create_eval_set(workspace=workspace, name="Imported", criteria="Answers it.")
    lines = [
        {**trace_data(n), "id": f"run-{n}", "label": label, "note": f"note {n}"}
        for n, label in enumerate(["good", "bad", "neutral", "maybe"])
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    page = logged_in_page(owner)
    page.goto(eval_set.get_absolute_url())
    page.get_by_test_id("import-link").click()
    page.get_by_label("File").set_input_files(str(path))
    page.get_by_test_id("import-submit").click()
    expect(page.get_by_test_id("import-report")).to_contain_text("3 labels imported")
    expect(page.get_by_test_id("import-errors")).to_contain_text("good, bad or neutral")
    shoot(page, "import-file")
    page.get_by_role("link", name="Back to the eval set →").click()
    expect(page.get_by_test_id("label-origins")).to_contain_text("File upload: 3")
    assert Feedback.objects.filter(eval_set=eval_set, origin="upload").count() == 3


@pytest.mark.worker
def test_import_labels_from_langfuse_scores(
    celery_worker_process,
    transactional_db,
    logged_in_page,
    owner,
    workspace,
    fake_langfuse,  # noqa: F811
    make_integration,  # noqa: F811
):
    fake = fake_langfuse(traces=3)
    integration = make_integration(fake)
    # The worker syncs the traces, then imports their scores.
    run = integration_services.start_sync(integration=integration)
    wait_for(lambda: type(run).objects.get(pk=run.pk).is_final, timeout=60, message="no sync")
    traces = list(Trace.objects.filter(integration=integration).order_by("external_id"))
    eval_set = create_eval_set(
        workspace=workspace,
        name="From Langfuse",
        criteria="Answers it.",
        trace_ids=[t.pk for t in traces],
    )
    fake.add_score(traces[0].external_id, "correct", True, comment="spot on")
    fake.add_score(traces[1].external_id, "correct", False)
    page = logged_in_page(owner)
    page.goto(eval_set.get_absolute_url())
    page.get_by_test_id("import-link").click()
    page.get_by_label("Score or feedback name").fill("correct")
    page.get_by_test_id("import-scores").click()
    expect(page.get_by_test_id("score-report")).to_contain_text("2 labels imported from 2 scores")
    shoot(page, "import-langfuse")
    page.goto(eval_set.get_absolute_url())
    expect(page.get_by_test_id("label-origins")).to_contain_text("Langfuse score: 2")
    expect(page.get_by_test_id("label-table")).to_contain_text("spot on")


def test_an_assigned_queue_for_two_reviewers_shows_their_kappa(
    logged_in_page, owner, member, workspace
):
    traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(6)]
    eval_set = create_eval_set(
        workspace=workspace,
        name="Shared queue",
        criteria="The agent answers the question.",
        trace_ids=[t.pk for t in traces],
    )
    lead = logged_in_page(owner)
    lead.goto(eval_set.get_absolute_url())
    assign = lead.get_by_test_id("assign")
    assign.locator("summary").click()
    assign.get_by_label(owner.email).check()
    assign.get_by_label(member.email).check()
    assign.get_by_test_id("agreement-target").fill("2")
    assign.get_by_test_id("assign-submit").click()
    expect(lead.locator(".messages")).to_contain_text("8 trace assignments made")
    expect(lead.get_by_test_id("reviewer-table")).to_contain_text(member.email)

    # Each reviewer finds the queue on the home page and labels it with the keyboard.
    for page, keys in (
        (lead, ["1", "2", "1", "2"]),
        (logged_in_page(member), ["1", "1", "2", "1"]),
    ):
        page.goto(f"/w/{workspace.slug}/")
        queue = page.get_by_test_id("my-queue")
        expect(queue).to_contain_text("Shared queue: 4 traces to label")
        queue.get_by_role("link", name="Shared queue").click()
        page.wait_for_url("**/review/")
        # review.js is deferred: keys pressed before it runs would be lost.
        page.wait_for_load_state("load")
        for key in keys:
            before = page.get_by_test_id("review-card").get_attribute("data-trace")
            page.keyboard.press(key)
            # Six traces, four in each queue: a next card always follows.
            expect(page.get_by_test_id("review-card")).not_to_have_attribute("data-trace", before)
        page.goto(f"/w/{workspace.slug}/")
        expect(page.get_by_test_id("my-queue")).to_have_count(0)

    lead.goto(eval_set.get_absolute_url())
    # The two shared traces were labelled 1/1 and 2/1: κ is 0 on 2 shared traces.
    expect(lead.get_by_test_id("reviewer-kappa")).to_contain_text(
        "Inter-reviewer κ: 0.00 on 2 shared traces"
    )
    expect(lead.get_by_test_id("reviewer-warning")).to_contain_text("barely above chance")
    shoot(lead, "reviewers-kappa")


def test_assign_traces_to_a_reviewer_from_the_trace_list(
    logged_in_page, owner, member, workspace, labelled_set
):
    eval_set, traces = labelled_set
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/")
    for trace in traces[1:]:
        page.locator(f'input[name=trace][value="{trace.pk}"]').check()
    page.get_by_label("Eval set").select_option(str(eval_set.pk))
    page.get_by_test_id("bulk-reviewer").select_option(label=member.email)
    page.get_by_test_id("bulk-assign").click()
    expect(page.locator(".messages")).to_contain_text("2 traces assigned in “Support answers”")

    reviewer = logged_in_page(member)
    reviewer.goto(f"/w/{workspace.slug}/")
    expect(reviewer.get_by_test_id("my-queue")).to_contain_text("2 traces to label")
