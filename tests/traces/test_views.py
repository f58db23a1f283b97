import pytest
from django.urls import reverse
from django.utils import dateformat
from django.utils.timezone import localtime

from integrations.models import Integration
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import services
from traces.models import EvalSet, Feedback


def url(name, workspace, **kwargs):
    return reverse(f"traces:{name}", kwargs={"slug": workspace.slug, **kwargs})


def test_trace_list_shows_traces_with_label_state(
    login, workspace, owner, eval_set, traces, django_assert_max_num_queries
):
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="negative")
    client = login(owner)
    with django_assert_max_num_queries(12):
        response = client.get(url("list", workspace))
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('name="trace"') == 12
    assert "✗ 1" in html
    assert "New eval set from selection" in html


def test_trace_list_filters_and_pages(login, workspace, owner):
    for n in range(60):
        TraceFactory(workspace=workspace, has_error=n % 2 == 0, tags=["a"] if n < 5 else ["b"])
    client = login(owner)
    first = client.get(url("list", workspace))
    assert first.content.decode().count('name="trace"') == 50
    cursor = first.context["page"].next_cursor
    second = client.get(url("list", workspace), {"cursor": cursor})
    assert second.content.decode().count('name="trace"') == 10
    ids = {t.pk for t in first.context["page"].traces} | {
        t.pk for t in second.context["page"].traces
    }
    assert len(ids) == 60
    errors = client.get(url("list", workspace), {"has_error": "true", "tag": "a"})
    assert len(errors.context["page"].traces) == 3


def test_trace_list_says_which_filter_of_the_url_it_could_not_read(login, workspace, owner):
    TraceFactory(workspace=workspace, has_error=True)
    TraceFactory(workspace=workspace, has_error=False)
    client = login(owner)

    response = client.get(url("list", workspace), {"date_from": "yesterday", "has_error": "1"})

    # The error filter applies; the unreadable date is named rather than silently dropped.
    assert len(response.context["page"].traces) == 1
    notice = response.content.decode().split('data-testid="unread-filters">')[1].split("</p>")[0]
    assert notice.startswith("Not understood, so ignored")
    assert "<strong>From</strong>: &#x27;yesterday&#x27; is not a date (YYYY-MM-DD)." in notice
    assert "Errors" not in notice
    fine = client.get(url("list", workspace), {"date_from": "2026-01-02"}).content.decode()
    assert 'data-testid="unread-filters"' not in fine


def test_trace_list_filtered_by_htmx_says_which_filters_it_could_not_read(
    login, workspace, owner, traces
):
    response = login(owner).get(
        url("list", workspace),
        {"date_to": "31/12/2026", "label": "maybe"},
        headers={"HX-Request": "true", "HX-Target": "trace-rows"},
    )

    notice = response.content.decode().split('data-testid="unread-filters">')[1].split("</p>")[0]
    assert notice.startswith("Not understood, so ignored")
    assert "<strong>To</strong>" in notice and "<strong>Labels</strong>" in notice


def test_trace_list_with_a_broken_page_link_says_it_shows_the_newest(login, workspace, owner):
    TraceFactory(workspace=workspace)

    html = login(owner).get(url("list", workspace), {"cursor": "not-a-cursor"}).content.decode()

    notice = html.split('data-testid="unread-filters">')[1].split("</p>")[0]
    assert "<strong>Page</strong>: not a link to a page of this list" in notice
    assert "← Newest" not in html  # it is the newest page


def test_free_text_search_finds_output_words(login, workspace, owner):
    TraceFactory(workspace=workspace, search_text="question? the refund was denied")
    TraceFactory(workspace=workspace, search_text="all good")
    response = login(owner).get(url("list", workspace), {"q": "REFUND"})
    assert len(response.context["page"].traces) == 1


def test_htmx_filter_renders_only_the_rows(login, workspace, owner, traces):
    response = login(owner).get(
        url("list", workspace), headers={"HX-Request": "true", "HX-Target": "trace-rows"}
    )
    assert b"<html" not in response.content
    assert b'name="trace"' in response.content


def test_trace_detail_shows_step_tree_with_errors(login, workspace, owner):
    from tests.traces.factories import trace_data

    trace = TraceFactory(workspace=workspace, data=trace_data(1, error="order service down"))
    html = login(owner).get(url("detail", workspace, pk=trace.pk)).content.decode()
    assert html.count('data-testid="step"') == 3
    assert "order service down" in html and "step-error" in html
    assert "gpt-4o-mini" in html and "150 tokens" in html


@pytest.mark.parametrize("source", ["langfuse", "openai"])
def test_a_trace_whose_steps_carry_no_metadata_still_opens(login, workspace, owner, source):
    # Rows stored before ingest filled every step's metadata have steps without one.
    step = {"id": "s1", "type": "llm", "name": "answer", "output": "Your order has shipped."}
    data = {"input": "where is my order?", "output": "shipped", "steps": [step]}
    trace = TraceFactory(workspace=workspace, source=source, data=data)
    response = login(owner).get(url("detail", workspace, pk=trace.pk))
    assert response.status_code == 200
    assert "Your order has shipped." in response.content.decode()


def test_trace_page_lists_each_label_with_its_reviewer_set_and_note(
    login, workspace, owner, member, eval_set, traces
):
    trace = traces[0]
    services.record_feedback(
        eval_set=eval_set, trace=trace, user=member, rating="negative", note="Wrong order id"
    )
    services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")

    html = login(owner).get(url("detail", workspace, pk=trace.pk)).content.decode()

    labels = html[html.index("<strong>Labels</strong>") :]
    assert "✗ <strong>member@acme.test</strong> in <a" in labels
    assert "✓ <strong>owner@acme.test</strong> in <a" in labels
    assert labels.count(f">{eval_set.name}</a>") == 2
    assert "“<bdi>Wrong order id</bdi>”" in labels
    # The owner's own label, on the set's rating form.
    assert "yours: ✓ good" in html


def test_large_payload_is_truncated_until_show_all(login, workspace, owner):
    data = {"input": "x" * 50_000, "output": "done", "steps": []}
    trace = TraceFactory(workspace=workspace, data=data)
    client = login(owner)
    short = client.get(url("detail", workspace, pk=trace.pk)).content.decode()
    assert "Show all" in short and "x" * 50_000 not in short
    full = client.get(url("detail", workspace, pk=trace.pk), {"full": "1"}).content.decode()
    assert "x" * 50_000 in full


def _nested(levels: int, bottom="the bottom"):
    value = bottom
    for _ in range(levels):
        value = {"level": value}
    return value


def test_a_trace_stored_950_levels_deep_renders_depth_limited(login, workspace, owner):
    """Stored before ingest had a nesting limit: the page still renders, clipped."""
    from tests.traces.factories import trace_data

    data = trace_data(1)
    data["input"] = _nested(950)
    data["steps"][2]["output"] = _nested(950)
    trace = TraceFactory(workspace=workspace, data=data)
    client = login(owner)

    page = client.get(url("detail", workspace, pk=trace.pk))
    full = client.get(url("detail", workspace, pk=trace.pk), {"full": "1"})

    assert (page.status_code, full.status_code) == (200, 200)
    html = page.content.decode()
    assert "nested deeper than 32 levels: not shown" in html
    assert "the bottom" not in html
    assert html.count('data-testid="step"') == 3


def test_a_trace_nested_within_the_limit_is_shown_whole(login, workspace, owner):
    trace = TraceFactory(
        workspace=workspace, data={"input": _nested(31), "output": "", "steps": []}
    )

    html = login(owner).get(url("detail", workspace, pk=trace.pk)).content.decode()

    assert "the bottom" in html and "not shown" not in html


def test_a_chain_of_950_steps_renders_flat_below_the_depth_limit(login, workspace, owner):
    from traces.selectors import MAX_STEP_DEPTH

    steps = [
        {"id": f"s{i}", "parent_id": f"s{i - 1}" if i else None, "type": "span",
         "name": f"step {i}", "error": "boom" if i == 949 else None, "metadata": {}}
        for i in range(950)
    ]  # fmt: skip
    trace = TraceFactory(workspace=workspace, data={"steps": steps, "input": "", "output": ""})

    response = login(owner).get(url("detail", workspace, pk=trace.pk), {"full": "1"})

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-testid="step"') == 950
    assert html.index("step 948") < html.index("step 949")
    assert html.count("step step-error") == MAX_STEP_DEPTH + 1  # the erring step, its ancestors


def _many_steps(n: int, *, error_at: int | None = None) -> list[dict]:
    return [
        {"id": f"s{i}", "parent_id": f"s{i - i % 10}" if i % 10 else None, "type": "tool",
         "name": f"call {i:04d}", "input": {"n": i}, "output": {"ok": True},
         "error": "boom" if i == error_at else None, "metadata": {}}
        for i in range(n)
    ]  # fmt: skip


def test_a_trace_of_thousands_of_steps_shows_the_first_with_show_all(login, workspace, owner):
    """5,000 steps made a 3.5 MB page: the first ones show, the rest one click away."""
    from traces.selectors import MAX_SHOWN_STEPS

    steps = _many_steps(MAX_SHOWN_STEPS + 700, error_at=MAX_SHOWN_STEPS + 650)
    trace = TraceFactory(workspace=workspace, data={"steps": steps, "input": "", "output": ""})
    client = login(owner)

    response = client.get(url("detail", workspace, pk=trace.pk))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-testid="step"') == MAX_SHOWN_STEPS
    assert f"call {MAX_SHOWN_STEPS - 1:04d}" in html and f"call {MAX_SHOWN_STEPS:04d}" not in html
    notice = html.split('data-testid="steps-cut">')[1].split("</p>")[0]
    assert notice.startswith(
        f"Showing the first {MAX_SHOWN_STEPS} of {MAX_SHOWN_STEPS + 700} steps; "
        "1 of the rest recorded an error."
    )
    assert '<a href="?full=1">Show all</a>' in notice
    full = client.get(url("detail", workspace, pk=trace.pk), {"full": "1"}).content.decode()
    assert full.count('data-testid="step"') == MAX_SHOWN_STEPS + 700
    assert 'data-testid="steps-cut"' not in full


def test_the_compact_view_of_a_huge_trace_is_cut_on_the_review_card(
    login, workspace, owner, eval_set
):
    """Every step's compact form went with each card: a megabyte per keypress."""
    trace = TraceFactory(
        workspace=workspace, data={"steps": _many_steps(3000), "input": "q", "output": "a"}
    )
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    client = login(owner)

    card = client.get(url("review", workspace, pk=eval_set.pk), {"trace": trace.pk})

    html = card.content.decode()
    assert card.status_code == 200
    compact = html.split('data-testid="compact-view">')[1].split("</details>")[0]
    assert "call 2999" not in compact
    # The notice counts the characters the summary does.
    size = compact.split("Compact view: what evals read (")[1].split(" of ")[0]
    assert f"Showing 4000 of {size} characters." in compact
    assert f'<a href="{url("detail", workspace, pk=trace.pk)}?full=1" target="_blank"' in compact
    page = client.get(url("detail", workspace, pk=trace.pk)).content.decode()
    assert "call 2999" not in page.split('data-testid="compact-view">')[1]
    full = client.get(url("detail", workspace, pk=trace.pk), {"full": "1"}).content.decode()
    assert "call 2999" in full.split('data-testid="compact-view">')[1]


def test_steps_in_a_parent_cycle_are_shown_once(login, workspace, owner):
    steps = [
        {"id": "a", "parent_id": "b", "type": "span", "name": "step a", "metadata": {}},
        {"id": "b", "parent_id": "a", "type": "span", "name": "step b", "metadata": {}},
    ]
    trace = TraceFactory(workspace=workspace, data={"steps": steps, "input": "", "output": ""})

    response = login(owner).get(url("detail", workspace, pk=trace.pk))

    assert response.status_code == 200
    assert response.content.decode().count('data-testid="step"') == 2


def test_add_selected_traces_to_eval_set(login, workspace, owner, traces):
    eval_set = services.create_eval_set(workspace=workspace, name="E", criteria="c")
    response = login(owner).post(
        url("add_to_eval_set", workspace),
        {"eval_set": eval_set.pk, "trace": [traces[0].pk, traces[1].pk]},
    )
    assert response.status_code == 302
    assert eval_set.memberships.count() == 2


def test_create_eval_set_from_form(login, workspace, owner, traces):
    response = login(owner).post(
        url("evalset_create", workspace),
        {
            "name": "Refund answers",
            "criteria": "Cites the refund policy.",
            "target_labels": "10",
            "source_kind": "filter",
            "saved_filter": "tag=support&has_error=false",
            "trace_ids": "",
        },
    )
    eval_set = EvalSet.objects.get()
    assert response.status_code == 302 and response.url == eval_set.get_absolute_url()
    assert eval_set.saved_filter == {"tag": "support", "has_error": "false"}
    assert eval_set.created_by == owner


def test_an_eval_set_filter_with_a_part_it_cannot_read_is_refused_naming_it(
    login, workspace, owner, traces
):
    response = login(owner).post(
        url("evalset_create", workspace),
        {
            "name": "Recent refunds",
            "criteria": "Cites the refund policy.",
            "target_labels": "10",
            "source_kind": "filter",
            "saved_filter": "tag=support&date_from=last-week",
            "trace_ids": "",
        },
    )

    # Saved without the date, the set would queue every support trace ever received.
    assert response.status_code == 400
    error = "date_from: &#x27;last-week&#x27; is not a date (YYYY-MM-DD)."
    page = response.content.decode()
    assert f'<small id="evalset-filter-errors">{error}</small>' in page
    # Read out with the field (after its name), where a screen reader user is.
    assert 'aria-describedby="evalset-filter-errors evalset-filter-help"' in page
    assert not EvalSet.objects.exists()


def test_a_target_the_server_refuses_is_named_beside_its_field(login, workspace, owner, traces):
    """A number box takes "1e3" (a thousand, to the browser), which the form refuses: the
    page came back with the value kept and no word of what was wrong with it."""
    client = login(owner)
    response = client.post(
        url("evalset_create", workspace),
        {
            "name": "Refund answers",
            "criteria": "Cites the refund policy.",
            "target_labels": "1e3",
            "source_kind": "manual",
            "trace_ids": "",
        },
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert '<small id="evalset-target-errors">Enter a whole number.</small>' in page
    # Marked invalid (the page opens on it) and read out with its error, then its help.
    described = 'aria-describedby="evalset-target-errors evalset-target-help"'
    assert f'{described} aria-invalid="true"' in page
    assert 'value="1e3"' in page
    assert not EvalSet.objects.exists()


def test_eval_set_list_shows_split_and_dashes_for_evals(login, workspace, owner, eval_set, traces):
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    html = login(owner).get(url("evalset_list", workspace)).content.decode()
    assert "✓ 1" in html and "✗ 0" in html and "1/10" in html
    assert "—" in html


def test_review_label_then_next_card(login, workspace, owner, eval_set, traces):
    client = login(owner)
    page = client.get(url("review", workspace, pk=eval_set.pk))
    assert page.context["trace"] == traces[0]
    assert "0 traces labelled good or bad, of the 10 targeted" in page.content.decode()
    response = client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        {"rating": "positive", "note": "good answer"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert response.context["trace"] == traces[1]
    assert "1 trace labelled good or bad, of the 10 targeted" in html
    assert "9 more good or bad labels" in html
    assert Feedback.objects.get().note == "good answer"


def test_review_of_a_set_smaller_than_its_target_says_how_to_reach_it(
    login, workspace, owner, traces
):
    # Three hand-picked traces, target ten: "Generate" can never be reached by labelling.
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, target_labels=10)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces[:3]])
    client = login(owner)
    for trace in traces[:2]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    last = client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[2].pk),
        {"rating": "negative"},
        headers={"HX-Request": "true"},
    ).content.decode()
    assert "All caught up" not in last
    assert "needs 10 labelled good or bad before iofold can write the eval and has 3" in last
    assert "Add 7 more traces to the set from the trace list, or lower its target to 3" in last
    assert f'href="{url("list", workspace)}" data-testid="find-traces">Add traces' in last
    settings = url("evalset_edit", workspace, pk=eval_set.pk)
    assert f'href="{settings}#target-labels" data-testid="lower-target">Lower the target' in last
    assert 'id="target-labels"' in client.get(settings).content.decode()


def test_review_of_a_set_at_its_target_is_all_caught_up(login, workspace, owner, traces):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, target_labels=2)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces[:2]])
    for trace in traces[:2]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    page = login(owner).get(url("review", workspace, pk=eval_set.pk)).content.decode()
    assert "All caught up" in page and 'data-testid="lower-target"' not in page


def test_review_without_javascript_redirects(login, workspace, owner, eval_set, traces):
    client = login(owner)
    response = client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk), {"rating": "neutral"}
    )
    assert response.status_code == 302
    assert Feedback.objects.get().rating == "neutral"


def test_review_rejects_a_bad_rating(login, workspace, owner, eval_set, traces):
    response = login(owner).post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        {"rating": "great"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert not Feedback.objects.exists()


def test_undo_shows_the_undone_trace_again(login, workspace, owner, eval_set, traces):
    client = login(owner)
    client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        {"rating": "negative"},
    )
    response = client.post(
        url("review_undo", workspace, pk=eval_set.pk), headers={"HX-Request": "true"}
    )
    assert response.context["trace"] == traces[0]
    assert not Feedback.objects.exists()


def test_undo_is_offered_only_once_the_reviewer_has_a_label_in_the_set(
    login, workspace, owner, eval_set, traces
):
    client = login(owner)
    review = url("review", workspace, pk=eval_set.pk)
    assert 'data-testid="undo"' not in client.get(review).content.decode()

    client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        {"rating": "negative"},
    )
    assert 'data-testid="undo"' in client.get(review).content.decode()

    client.post(url("review_undo", workspace, pk=eval_set.pk))
    assert 'data-testid="undo"' not in client.get(review).content.decode()


def test_without_javascript_undo_gives_back_the_note(login, workspace, owner, eval_set, traces):
    client = login(owner)
    client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        {"rating": "negative", "note": "Never called the order tool"},
    )
    response = client.post(url("review_undo", workspace, pk=eval_set.pk), follow=True)
    assert response.context["trace"] == traces[0]
    assert "Label undone." in response.content.decode()
    assert ">Never called the order tool</textarea>" in response.content.decode()


def test_skip_moves_on_and_comes_back(login, workspace, owner, eval_set, traces):
    client = login(owner)
    response = client.post(
        url("review_skip", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        headers={"HX-Request": "true"},
    )
    assert response.context["trace"] == traces[1]


def test_without_javascript_skip_and_label_redirect_and_say_what_happened(
    login, workspace, owner, eval_set, traces
):
    client = login(owner)
    response = client.post(
        url("review_skip", workspace, pk=eval_set.pk, trace_pk=traces[0].pk), follow=True
    )
    assert response.context["trace"] == traces[1]
    assert 'data-testid="notice">Skipped.' in response.content.decode()

    response = client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[1].pk),
        {"rating": "positive"},
        follow=True,
    )
    assert "Labelled good." in response.content.decode()
    # The notice is shown once, not on every later visit.
    assert (
        "Labelled good."
        not in client.get(url("review", workspace, pk=eval_set.pk)).content.decode()
    )


def test_disagreement_is_flagged_after_labelling(login, workspace, owner, member, eval_set, traces):
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=member, rating="positive")
    response = login(owner).post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
        {"rating": "negative"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert "Another reviewer rated that trace differently" in html
    assert "Reviewers disagree on 1 trace" in html


def test_generate_action_says_how_many_more(login, workspace, owner, eval_set, traces):
    client = login(owner)
    html = client.get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
    assert "10 more labels" in html
    for trace in traces[:10]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    html = client.get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-ready="true"' in html or 'data-testid="generate"' in html
    assert "more label" not in html


def test_a_set_of_many_labels_says_the_page_lists_the_latest_with_the_download(
    login, workspace, owner
):
    """10,000 labels listed the latest 200 without a word: they looked like all of them."""
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    traces = TraceFactory.create_batch(203, workspace=workspace)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    Feedback.objects.bulk_create(
        Feedback(workspace=workspace, eval_set=eval_set, trace=t, user=owner, rating="positive")
        for t in traces
    )

    response = login(owner).get(url("evalset_detail", workspace, pk=eval_set.pk))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-testid="label-row"') == 200
    notice = html.split('data-testid="labels-cut">')[1].split("</p>")[0]
    export = reverse("evals:export_set", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    assert notice == (
        "Showing the 200 most recently labelled of 203 traces. "
        f'<a href="{export}">Download every label (JSON)</a>'
    )


def test_the_set_page_links_writers_to_its_judge_template(
    login, workspace, owner, viewer, eval_set
):
    judge_url = f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/judge/"
    html = login(owner).get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="judge-template-link"' in html and f'href="{judge_url}"' in html
    assert login(owner).get(judge_url).status_code == 200
    html = login(viewer).get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
    assert "judge-template-link" not in html


def test_viewer_sees_review_without_buttons(login, workspace, viewer, eval_set, traces):
    html = login(viewer).get(url("review", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="review-card"' in html and "rate-positive" not in html


def test_an_unlabelled_sets_page_tells_a_viewer_what_they_will_see_not_to_review(
    login, workspace, owner, viewer, eval_set
):
    from django.utils.html import strip_tags

    def no_labels(user):
        html = login(user).get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
        paragraph = html.split('data-testid="no-labels">')[1].split("</p>")[0]
        return " ".join(strip_tags(paragraph).split())

    assert no_labels(owner).startswith("No labels yet. Press Review traces")
    # A viewer has no Review button to press.
    assert no_labels(viewer) == (
        "No labels yet. They appear here as the set's reviewers label its traces."
    )


def test_review_start_opens_newest_set_or_asks_for_one(login, workspace, owner, traces):
    client = login(owner)
    assert client.get(url("review_start", workspace)).url == url("evalset_create", workspace)
    eval_set = services.create_eval_set(workspace=workspace, name="E", criteria="c")
    assert client.get(url("review_start", workspace)).url == url(
        "review", workspace, pk=eval_set.pk
    )


@pytest.mark.parametrize("has_set", [False, True])
def test_onboarding_checklist_ticks_itself(login, workspace, owner, has_set):
    client = login(owner)
    steps = client.get(reverse("workspaces:home", kwargs={"slug": workspace.slug})).context[
        "checklist"
    ]
    titles = [s["title"] for s in steps]
    assert "Create an eval set" in titles
    assert len(titles) == len(set(titles)), "each step appears once"
    TraceFactory(workspace=workspace)
    if has_set:
        services.create_eval_set(workspace=workspace, name="E", criteria="c")
    steps = client.get(reverse("workspaces:home", kwargs={"slug": workspace.slug})).context[
        "checklist"
    ]
    done = {s["title"]: s["done"] for s in steps}
    assert done["Connect a source or upload traces"]
    assert done["Create an eval set"] is has_set
    assert not done["Generate your first eval"]


def test_trace_rows_escape_names_and_tags(login, workspace, owner, member, eval_set, traces):
    odd = TraceFactory(
        workspace=workspace,
        name="<script>alert(1)</script> " + "x" * 80,
        tags=["a&b", "<i>", "é/ü"],
        has_error=True,
        tool_call_count=0,
        latency_ms=None,
    )
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[odd.pk])
    services.record_feedback(eval_set=eval_set, trace=odd, user=owner, rating="positive")
    services.record_feedback(eval_set=eval_set, trace=odd, user=member, rating="negative")
    html = login(owner).get(url("list", workspace)).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; " + "x" * 33 + "…" in html
    assert 'href="?tag=a%26b">a&amp;b</a>' in html and 'href="?tag=%3Ci%3E">&lt;i&gt;</a>' in html
    assert 'href="?tag=%C3%A9/%C3%BC">é/ü</a>' in html
    assert f'href="{url("list", workspace)}{odd.pk}/"' in html
    row = html[html.index(f'value="{odd.pk}"') :].split("</tr>")[0]
    assert '<span class="badge bad">error</span>' in row and "—" in row
    assert "✓ 1" in row and "✗ 1" in row and ">tie<" in row and 'title="2 label(s)"' in row
    # As the ``date:"M j, H:i"`` filter would write it.
    assert f"<td>{dateformat.format(localtime(odd.timestamp), 'Y-m-d H:i')}</td>" in row


def test_trace_list_queries_do_not_grow_with_rows(
    login, workspace, owner, eval_set, traces, django_assert_max_num_queries
):
    for trace in traces:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    for _ in range(50):
        TraceFactory(workspace=workspace)
    client = login(owner)
    # Session, user, membership, traces, their label counts, workspaces, eval sets, the
    # reviewers for bulk assign, and the session save with the savepoint pair the test
    # transaction adds around it.
    with django_assert_max_num_queries(11):
        html = client.get(url("list", workspace)).content.decode()
    assert html.count('name="trace"') == 50


def test_review_card_and_label_take_few_queries(
    login, workspace, owner, eval_set, traces, django_assert_max_num_queries
):
    client = login(owner)
    htmx = {"HX-Request": "true"}
    # Session, user, membership, eval set, the reviewer's assigned traces, next trace,
    # progress, session save (inside the savepoint pair the test transaction adds).
    with django_assert_max_num_queries(10):
        card = client.get(url("review", workspace, pk=eval_set.pk), headers=htmx)
    assert card.context["trace"] == traces[0] and card.context["mine"] is None
    # Session, user, membership, eval set, trace, its membership check, the label's
    # update_or_create (with its savepoints), its audit row, the other-reviewer check,
    # the reviewer's assigned traces, next trace, progress and the session save.
    with django_assert_max_num_queries(20):
        response = client.post(
            url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk),
            {"rating": "negative"},
            headers=htmx,
        )
    assert response.context["trace"] == traces[1]
    assert "1 trace labelled good or bad, of the 10 targeted" in response.content.decode()


def test_reopened_trace_shows_my_earlier_label(login, workspace, owner, eval_set, traces):
    services.record_feedback(
        eval_set=eval_set, trace=traces[3], user=owner, rating="negative", note="wrong order"
    )
    html = (
        login(owner)
        .get(url("review", workspace, pk=eval_set.pk), {"trace": traces[3].pk})
        .content.decode()
    )
    assert "You labelled this bad" in html and "wrong order" in html


@pytest.mark.parametrize(
    "target", ["//evil.example/", "/\\evil.example/", "https://evil.example/w/"]
)
def test_add_to_eval_set_refuses_an_off_site_next(login, workspace, owner, traces, target):
    eval_set = services.create_eval_set(workspace=workspace, name="E", criteria="c")
    client = login(owner)
    for data in ({"eval_set": eval_set.pk, "trace": [traces[0].pk]}, {}):  # success and error
        response = client.post(url("add_to_eval_set", workspace), {**data, "next": target})
        assert response.status_code == 302
        assert response.url == url("list", workspace)


def test_add_to_eval_set_returns_to_a_same_site_next(login, workspace, owner, traces):
    eval_set = services.create_eval_set(workspace=workspace, name="E", criteria="c")
    back = url("list", workspace) + "?tag=a"
    response = login(owner).post(
        url("add_to_eval_set", workspace),
        {"eval_set": eval_set.pk, "trace": [traces[0].pk], "next": back},
    )
    assert response.url == back


def test_new_eval_set_from_selection_posts_and_keeps_the_token_out_of_the_url(
    login, workspace, owner, traces
):
    client = login(owner)
    html = client.get(url("list", workspace)).content.decode()
    button = html[html.index('name="pick"') - 400 : html.index("New eval set from selection")]
    assert 'formmethod="get"' not in button
    assert url("evalset_create", workspace) in button

    picked = [traces[0].pk, traces[2].pk]
    response = client.post(
        url("evalset_create", workspace),
        {"pick": "1", "trace": picked, "csrfmiddlewaretoken": "x", "next": "/"},
    )
    assert response.status_code == 200
    assert not response.context["form"].is_bound
    assert response.context["form"].initial["trace_ids"] == f"{traces[0].pk},{traces[2].pk}"
    assert not EvalSet.objects.exists()

    response = client.post(
        url("evalset_create", workspace),
        {
            "name": "Picked",
            "criteria": "c",
            "target_labels": "5",
            "source_kind": "manual",
            "saved_filter": "",
            "trace_ids": response.context["form"].initial["trace_ids"],
        },
    )
    eval_set = EvalSet.objects.get()
    assert response.status_code == 302
    assert set(eval_set.memberships.values_list("trace_id", flat=True)) == set(picked)


def test_empty_trace_list_offers_every_source_and_uploads(login, workspace, owner):
    page = login(owner).get(url("list", workspace)).content.decode()

    assert "No traces yet" in page
    assert "Connect a source (Langfuse, LangSmith, OpenAI" in page
    # Nothing to select: no selection toolbar.
    assert "selected</span>" not in page
    assert "New eval set from selection" not in page
    assert "Connect Langfuse" not in page
    assert f'href="{reverse("integrations:list", args=[workspace.slug])}"' in page
    assert reverse("integrations:upload", args=[workspace.slug]) in page


def _source_options(page: str) -> list[str]:
    select = page.split('<select name="source">')[1].split("</select>")[0]
    return [part.split('"')[0] for part in select.split('<option value="')[1:]]


def test_source_filter_lists_the_workspace_own_sources(login, workspace, owner):
    TraceFactory(workspace=workspace, source="api", source_key="api")
    TraceFactory(workspace=workspace)  # an upload
    synced = Integration.objects.create(workspace=workspace, kind="langsmith", name="LS", host="")
    TraceFactory(
        workspace=workspace, integration=synced, source="langsmith", source_key=f"i{synced.pk}"
    )
    TraceFactory(source="demo", source_key="demo")  # another workspace's
    client = login(owner)

    page = client.get(url("list", workspace)).content.decode()
    assert _source_options(page) == ["", "langsmith", "upload", "api"]

    # A source chosen in the URL stays selectable, even with no trace of it.
    chosen = client.get(url("list", workspace), {"source": "otlp"}).content.decode()
    assert _source_options(chosen) == ["", "langsmith", "otlp", "upload", "api"]
    assert '<option value="otlp" selected>' in chosen
    conversations = client.get(url("conversation_list", workspace)).content.decode()
    assert _source_options(conversations) == ["", "langsmith", "upload", "api"]


@pytest.mark.parametrize("page", ["list", "conversation_list"])
@pytest.mark.parametrize("chosen", ["true", "false"])
def test_errors_filter_keeps_its_choice(login, workspace, owner, page, chosen):
    html = login(owner).get(url(page, workspace), {"has_error": chosen}).content.decode()
    select = html.split('<select name="has_error">')[1].split("</select>")[0]
    assert f'<option value="{chosen}" selected>' in select
    assert select.count(" selected") == 1


def test_source_filter_lists_webhook_traces_of_an_integration_that_also_syncs(
    login, workspace, owner
):
    hooked = Integration.objects.create(
        workspace=workspace, kind="langfuse", name="LF", host="", webhook_secret="s" * 32
    )
    for external_id, source in (("a-synced", "langfuse"), ("b-pushed", "webhook")):
        TraceFactory(
            workspace=workspace,
            integration=hooked,
            source=source,
            source_key=f"i{hooked.pk}",
            external_id=external_id,
        )

    page = login(owner).get(url("list", workspace)).content.decode()
    assert _source_options(page) == ["", "langfuse", "webhook"]


def test_skipping_the_last_trace_says_only_skipped_ones_are_left_and_offers_them(
    login, workspace, owner, eval_set, traces
):
    for trace in traces[1:]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    client = login(owner)
    skip = url("review_skip", workspace, pk=eval_set.pk, trace_pk=traces[0].pk)
    response = client.post(skip, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.context["trace"] is None  # not the trace just put aside
    assert "You have skipped 1 trace and labelled the rest." in html
    response = client.post(skip, follow=True)  # without JavaScript: the same page
    assert response.context["trace"] is None
    assert 'data-testid="review-skipped"' in response.content.decode()

    response = client.post(url("review_unskip", workspace, pk=eval_set.pk), follow=True)
    assert response.context["trace"] == traces[0]
