"""Labels are changed or removed from the label table and the trace page, with an audit."""

from urllib.parse import quote

from django.urls import reverse

from traces import services
from traces.models import Feedback, LabelChange


def url(name, workspace, **kwargs):
    return reverse(f"traces:{name}", kwargs={"slug": workspace.slug, **kwargs})


def test_reviewer_changes_own_label_and_the_audit_names_them(
    login, workspace, member, eval_set, traces
):
    label, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=member, rating="positive"
    )
    client = login(member)
    response = client.post(
        url("label_edit", workspace, pk=eval_set.pk, label_pk=label.pk),
        {"rating": "negative", "note": "wrong order number"},
    )
    assert response.status_code == 302
    label.refresh_from_db()
    assert (label.rating, label.note) == ("negative", "wrong order number")
    changes = list(LabelChange.objects.filter(eval_set=eval_set).order_by("id"))
    assert [(c.action, c.rating_before, c.rating_after) for c in changes] == [
        ("created", "", "positive"),
        ("changed", "positive", "negative"),
    ]
    assert changes[-1].changed_by == member
    page = client.get(eval_set.get_absolute_url()).content.decode()
    assert 'data-testid="label-history"' in page
    assert "wrong order number" in page


def test_member_cannot_change_someone_elses_label_but_admin_can(
    login, workspace, member, admin_user, owner, eval_set, traces
):
    label, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    edit = url("label_edit", workspace, pk=eval_set.pk, label_pk=label.pk)
    remove = url("label_remove", workspace, pk=eval_set.pk, label_pk=label.pk)
    assert login(member).post(edit, {"rating": "negative"}).status_code == 403
    assert login(member).post(remove).status_code == 403
    label.refresh_from_db()
    assert label.rating == "positive"

    assert login(admin_user).post(remove).status_code == 302
    assert not Feedback.objects.filter(pk=label.pk).exists()
    removed = LabelChange.objects.get(action="removed")
    assert (removed.labeller, removed.changed_by, removed.rating_before) == (
        owner,
        admin_user,
        "positive",
    )


def test_edit_with_a_bad_rating_changes_nothing_and_says_why_in_the_form(
    login, workspace, owner, eval_set, traces
):
    label, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    back = eval_set.get_absolute_url() + f"#row-{traces[0].pk}"
    response = login(owner).post(
        url("label_edit", workspace, pk=eval_set.pk, label_pk=label.pk),
        {"rating": "great", "note": "typed before the slip", "next": back},
    )
    # The form again, with why and what was typed, not a redirect that drops the note.
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-testid="label-edit-error"' in page
    assert "Pick a rating." in page
    assert "typed before the slip" in page
    assert f'name="next" value="{back}"' in page
    label.refresh_from_db()
    assert label.rating == "positive"
    assert LabelChange.objects.filter(action="changed").count() == 0


def _edit_form(workspace, eval_set, label, back=None):
    address = url("label_edit_form", workspace, pk=eval_set.pk, label_pk=label.pk)
    return address + (f"?next={quote(back, safe='/')}" if back else "")


def test_edit_form_is_a_fragment_for_htmx_and_a_page_without_javascript(
    login, workspace, owner, eval_set, traces
):
    label, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive", note="fine"
    )
    client = login(owner)
    table = client.get(eval_set.get_absolute_url()).content.decode()
    assert 'data-testid="rate-form"' not in table
    back = eval_set.get_absolute_url() + f"#row-{traces[0].pk}"
    edit = _edit_form(workspace, eval_set, label, back)
    # The row's Edit is a link to the form (hx-get loads it into the row).
    assert f'href="{edit}"' in table

    fragment = client.get(edit, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html
    assert 'data-testid="rate-form"' in html and "autofocus" in html
    assert "fine</textarea>" in html
    assert f'name="next" value="{back}"' in html
    assert 'data-testid="remove-label"' in html

    page = client.get(edit)
    html = page.content.decode()
    assert page.status_code == 200
    assert "<html" in html and 'data-testid="rate-form"' in html
    assert f'data-testid="back-link">← Back to {eval_set.name}' in html
    assert f'href="{back}"' in html  # Cancel and the back link return to the row


def test_edit_form_is_for_the_labels_reviewer_and_admins(
    login, workspace, owner, admin_user, member, viewer, eval_set, traces
):
    others, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    mine, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[1], user=member, rating="negative"
    )
    assert login(member).get(_edit_form(workspace, eval_set, mine)).status_code == 200
    assert login(member).get(_edit_form(workspace, eval_set, others)).status_code == 403
    assert login(admin_user).get(_edit_form(workspace, eval_set, mine)).status_code == 200
    assert login(viewer).get(_edit_form(workspace, eval_set, others)).status_code == 403


def test_edit_form_of_another_workspaces_label_is_not_found(
    login, workspace, other_workspace, owner, outsider, eval_set, traces
):
    from tests.traces.factories import EvalSetFactory, TraceFactory

    theirs_set = EvalSetFactory(workspace=other_workspace, created_by=outsider)
    trace = TraceFactory(workspace=other_workspace)
    services.add_traces_to_eval_set(eval_set=theirs_set, trace_ids=[trace.pk])
    theirs, _ = services.record_feedback(
        eval_set=theirs_set, trace=trace, user=outsider, rating="positive"
    )
    # Under this workspace's set, and under the other's set in this workspace's address.
    assert login(owner).get(_edit_form(workspace, eval_set, theirs)).status_code == 404
    assert login(owner).get(_edit_form(workspace, theirs_set, theirs)).status_code == 404
    mine, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    assert login(outsider).get(_edit_form(workspace, eval_set, mine)).status_code == 404


def test_label_of_another_workspace_is_not_found(
    login, workspace, outsider, eval_set, traces, owner
):
    label, _ = services.record_feedback(
        eval_set=eval_set, trace=traces[0], user=owner, rating="positive"
    )
    response = login(outsider).post(
        url("label_edit", workspace, pk=eval_set.pk, label_pk=label.pk), {"rating": "negative"}
    )
    assert response.status_code == 404


def test_label_table_shows_input_and_output_snippets(login, workspace, owner, eval_set, traces):
    traces[0].data = {**traces[0].data, "input": "where is order 991?", "output": "It ships today."}
    traces[0].save()
    services.record_feedback(eval_set=eval_set, trace=traces[0], user=owner, rating="positive")
    page = login(owner).get(eval_set.get_absolute_url()).content.decode()
    assert "where is order 991?" in page
    assert "It ships today." in page


def test_label_from_the_trace_page_returns_to_it(login, workspace, owner, eval_set, traces):
    client = login(owner)
    detail = url("detail", workspace, pk=traces[1].pk)
    page = client.get(detail).content.decode()
    assert f'data-eval-set="{eval_set.pk}"' in page
    response = client.post(
        url("review_label", workspace, pk=eval_set.pk, trace_pk=traces[1].pk),
        {"rating": "neutral", "note": "off topic", "next": detail},
    )
    assert response.status_code == 302
    assert response["Location"] == detail
    label = Feedback.objects.get(trace=traces[1], user=owner)
    assert (label.rating, label.note, label.origin) == ("neutral", "off topic", "review")
    assert "yours: – neutral" in client.get(detail).content.decode()


def test_trace_page_offers_only_the_sets_the_trace_is_in(login, workspace, owner, traces):
    from tests.traces.factories import EvalSetFactory

    other = EvalSetFactory(workspace=workspace, created_by=owner)
    page = login(owner).get(url("detail", workspace, pk=traces[0].pk)).content.decode()
    assert f'data-eval-set="{other.pk}"' not in page
