"""A trace filter on a source iofold does not know is named, never silently applied."""

import re

from django.urls import reverse

from tests.traces.factories import TraceFactory
from traces import services
from traces.models import EvalSet, Trace


def test_the_trace_list_names_an_unknown_source(login, workspace, owner, traces):
    page = login(owner).get(
        reverse("traces:list", kwargs={"slug": workspace.slug}), {"source": "bogus"}
    )
    html = page.content.decode()
    assert 'data-testid="unread-filters"' in html
    assert "<strong>Source</strong>: &#x27;bogus&#x27; is not a source of traces" in html
    # Ignored like the other unreadable filters: the list is the unfiltered one, as the
    # source menu's "Any" says.
    assert html.count('name="trace"') == len(traces)


def test_the_api_answers_400_for_an_unknown_source(api_client, workspace, owner, traces):
    api_client.force_login(owner)
    response = api_client.get(
        reverse("api-traces"), {"source": "bogus"}, headers={"X-Workspace": "acme"}
    )
    assert response.status_code == 400
    assert "'bogus' is not a source of traces (" in str(response.json()["source"])
    known = api_client.get(
        reverse("api-traces"), {"source": "upload"}, headers={"X-Workspace": "acme"}
    )
    assert known.status_code == 200


def test_an_eval_set_form_refuses_an_unknown_source(login, workspace, owner):
    response = login(owner).post(
        reverse("traces:evalset_create", kwargs={"slug": workspace.slug}),
        {
            "name": "Bogus",
            "criteria": "good",
            "target_labels": 10,
            "source_kind": "filter",
            "saved_filter": "source=bogus",
            "unit": "trace",
        },
    )
    assert response.status_code == 400
    assert "is not a source of traces" in response.content.decode()
    assert not EvalSet.objects.exists()


def test_save_filter_as_eval_set_names_an_unknown_source_on_first_render(login, workspace, owner):
    create = reverse("traces:evalset_create", kwargs={"slug": workspace.slug})
    page = login(owner).get(create, {"filter": "source=bogus&tag=checkout"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "source: &#x27;bogus&#x27; is not a source of traces (" in html
    assert 'name="saved_filter" value="source=bogus&amp;tag=checkout"' in html
    assert re.search(r'<input id="evalset-filter"[^>]*aria-invalid="true"', html)  # marked
    assert (
        "is not a source"
        not in login(owner).get(create, {"filter": "source=upload"}).content.decode()
    )


def test_a_stored_filter_on_an_unknown_source_still_matches_nothing(workspace, owner):
    # Sets saved before sources were checked keep meaning what they meant: no trace.
    TraceFactory(workspace=workspace)
    eval_set = services.create_eval_set(
        workspace=workspace, name="Old", criteria="good", created_by=owner,
        source_kind=EvalSet.SourceKind.FILTER, saved_filter={},
    )  # fmt: skip
    EvalSet.objects.filter(pk=eval_set.pk).update(saved_filter={"source": "gone"})
    eval_set.refresh_from_db()
    assert not Trace.objects.in_eval_set(eval_set).exists()


def test_editing_a_set_whose_stored_filter_no_longer_reads_names_it(login, workspace, owner):
    """Saved before sources were checked, the filter matches nothing: the edit page says why."""
    eval_set = services.create_eval_set(
        workspace=workspace, name="Old", criteria="good", created_by=owner,
        source_kind=EvalSet.SourceKind.FILTER, saved_filter={},
    )  # fmt: skip
    EvalSet.objects.filter(pk=eval_set.pk).update(saved_filter={"source": "gone"})
    edit = reverse("traces:evalset_edit", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    html = login(owner).get(edit).content.decode()
    assert "source: &#x27;gone&#x27; is not a source of traces (" in html


def test_new_eval_set_from_an_empty_selection_is_refused(login, workspace, owner):
    """Before: the form came up pre-filled with no traces and went on to create an empty
    hand-picked set, as if the selection had been taken."""
    traces = reverse("traces:list", kwargs={"slug": workspace.slug}) + "?tag=checkout"
    response = login(owner).post(
        reverse("traces:evalset_create", kwargs={"slug": workspace.slug}),
        {"pick": "1", "next": traces},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "No traces were selected" in html
    assert f'href="{traces.replace("&", "&amp;")}"' in html
    assert not EvalSet.objects.exists()
