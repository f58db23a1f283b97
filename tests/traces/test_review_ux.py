"""What a reviewer sees on the review card and the set's page: hints, progress, inputs."""

from django.urls import reverse

from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import services
from traces.models import Feedback


def url(name, workspace, **kwargs):
    return reverse(f"traces:{name}", kwargs={"slug": workspace.slug, **kwargs})


def _hint(html: str) -> str:
    start = html.find('data-testid="shortcuts"')
    return html[start : html.find("</p>", start)] if start >= 0 else ""


def test_the_undo_key_is_hinted_only_when_there_is_a_label_to_undo(
    login, workspace, owner, eval_set, traces
):
    client = login(owner)
    review = url("review", workspace, pk=eval_set.pk)
    first = client.get(review).content.decode()
    assert "skip" in _hint(first) and "undo" not in _hint(first)

    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="negative")
    assert "undo" in _hint(client.get(review).content.decode())


def test_a_viewer_is_not_shown_keys_for_buttons_they_do_not_have(
    login, workspace, viewer, eval_set, traces
):
    html = login(viewer).get(url("review", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="rate-form"' not in html and _hint(html) == ""


def test_neutral_labels_do_not_count_toward_the_target(login, workspace, owner, eval_set, traces):
    # The synthesiser learns from good and bad labels only: neutral ones never bring
    # "Generate eval" closer, so the progress must not say they do.
    ratings = ["positive", "negative", "neutral", "neutral"]
    for trace, rating in zip(traces[:4], ratings, strict=True):
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating=rating)
    client = login(owner)
    review = client.get(url("review", workspace, pk=eval_set.pk)).content.decode()
    assert "2 traces labelled good or bad, of the 10 targeted" in review
    assert "8 more good or bad labels" in review
    assert "2 more traces have a neutral or tied label: not counted" in review

    detail = client.get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
    assert "2 traces labelled good or bad, of the 10 targeted" in detail
    assert "2 more traces have a neutral or tied label" in detail
    assert "8 more labels" in detail  # the Generate button, the same count as the review's


def test_a_set_of_neutral_labels_is_not_ready_to_generate(
    login, api_client, workspace, owner, traces
):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, target_labels=2)
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces[:2]])
    for trace in traces[:2]:
        services.record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="neutral")
    client = login(owner)
    detail = client.get(url("evalset_detail", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-ready="false"' in detail and "2 more labels" in detail
    assert "0/2" in client.get(url("evalset_list", workspace)).content.decode()
    # Out of traces to label with none good or bad: no "lower its target to 0".
    review = client.get(url("review", workspace, pk=eval_set.pk)).content.decode()
    assert "and has 0" in review and "target to 0" not in review

    api_client.force_login(owner)
    body = api_client.get(
        reverse("api-eval-set", kwargs={"pk": eval_set.pk}), headers={"X-Workspace": "acme"}
    ).json()
    summary = body["summary"]
    assert (summary["labelled_traces"], summary["decided_traces"]) == (2, 0)
    assert (summary["ready"], summary["remaining"]) == (False, 2)


def test_a_note_too_long_is_named_and_given_back_not_called_a_missing_rating(
    login, workspace, owner, eval_set, traces
):
    client = login(owner)
    label = url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[0].pk)
    note = "The agent quoted the policy. " * 200  # 5,800 characters
    response = client.post(
        label, {"rating": "positive", "note": note}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 400 and "Pick a rating" not in html
    assert "The note was not saved: Ensure this value has at most 5000 characters" in html
    assert response.context["trace"] == traces[0]  # the same card, the note still in its box
    assert response.context["draft_note"] == note
    assert 'maxlength="5000"' in html

    # Without JavaScript: the same, through the review page.
    page = client.post(label, {"rating": "positive", "note": note}, follow=True)
    assert page.context["trace"] == traces[0] and page.context["draft_note"] == note
    assert "The note was not saved" in page.content.decode()
    assert not Feedback.objects.exists()


def test_an_archived_sets_review_says_so_and_offers_no_labels(
    login, workspace, owner, eval_set, traces
):
    services.archive_eval_set(eval_set=eval_set)
    html = login(owner).get(url("review", workspace, pk=eval_set.pk)).content.decode()
    assert "This eval set is archived; restore it to label." in html
    assert 'data-testid="rate-form"' not in html and 'data-testid="skip"' not in html


def test_a_review_link_to_a_trace_outside_the_set_says_so(
    login, workspace, owner, eval_set, traces
):
    outside = TraceFactory(workspace=workspace)
    client = login(owner)
    for asked in (outside.pk, "abc", 10**20, "\u00b2"):  # "²": isdigit, yet no int (a 500)
        page = client.get(url("review", workspace, pk=eval_set.pk), {"trace": asked})
        assert page.context["trace"] == traces[0]
        assert "That trace is not in this eval set; here is the next one" in page.content.decode()
    page = client.get(url("review", workspace, pk=eval_set.pk), {"trace": traces[3].pk})
    assert page.context["trace"] == traces[3]
    assert 'data-testid="notice"' not in page.content.decode()


def test_the_trace_page_of_a_trace_in_a_set_does_not_ask_to_add_it_to_one(
    login, workspace, owner, eval_set, traces
):
    detail = url("detail", workspace, pk=traces[0].pk)
    html = login(owner).get(detail).content.decode()
    assert 'data-testid="label-here"' in html
    assert "Not labelled yet. Label it above, for its eval set." in html
    assert "Add it to an eval set" not in html
    outside = TraceFactory(workspace=workspace)
    html = login(owner).get(url("detail", workspace, pk=outside.pk)).content.decode()
    assert "Not labelled yet. Add it to an eval set from the trace list" in html


def test_assigning_a_trace_to_a_reviewer_that_is_no_number_asks_for_one(
    login, workspace, owner, eval_set, traces
):
    """ "²" is a digit to ``str.isdigit`` but not to ``int``: it was a 500."""
    services.add_traces_to_eval_set(eval_set=eval_set, trace_ids=[traces[0].pk])
    assign = url("trace_assign", workspace, pk=eval_set.pk, trace_pk=traces[0].pk)

    response = login(owner).post(assign, {"reviewer": "\u00b2"}, follow=True)

    assert response.status_code == 200
    assert "Pick a reviewer." in response.content.decode()
