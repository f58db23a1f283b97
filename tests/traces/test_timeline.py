"""The trace page's timeline: each step's bar placed on the trace's span; errors open."""

from django.urls import reverse

from tests.traces.factories import TraceFactory, trace_data
from traces.models import Trace
from traces.selectors import step_tree, waterfall


def test_waterfall_places_steps_on_the_trace_span():
    rows = waterfall(step_tree(trace_data(1)))
    placed = {r.node.step["id"]: (r.offset, r.width) for r in rows}
    # The agent step spans the whole 2 s; the answer starts at 1 s and takes 0.5 s.
    assert placed == {"s1-1": (0.0, 100.0), "s1-2": (None, None), "s1-3": (50.0, 25.0)}


def test_waterfall_without_times_lists_steps_without_bars():
    data = trace_data(1)
    for step in data["steps"]:
        step["start_time"] = step["end_time"] = None
    assert all(r.offset is None for r in waterfall(step_tree(data)))


def test_trace_page_shows_the_timeline_and_opens_parents_of_errors(login, workspace, owner):
    data = trace_data(2)
    data["steps"][1]["error"] = "order service timed out"
    trace = TraceFactory(workspace=workspace, data=data, has_error=True)
    page = login(owner).get(
        reverse("traces:detail", kwargs={"slug": workspace.slug, "pk": trace.pk})
    )
    html = page.content.decode()
    assert html.count('data-testid="waterfall-row"') == 3
    assert 'x="50.00"' in html and 'width="25.00"' in html
    # The failing tool step sits under the agent step: both are open without a click.
    assert html.count('class="step step-error" open') == 2


def test_steps_timed_in_several_offsets_and_naive_sit_on_one_timeline(
    login, workspace, owner, api_client
):
    """An uploaded trace's steps keep their times as sent: naive (read as UTC, as the
    trace's own time is), in another offset, with ``Z``. The page places them all."""
    from workspaces.services import issue_token

    data = trace_data(3)
    data["steps"][0]["start_time"] = "2026-03-01T12:00:00"  # naive: UTC
    data["steps"][0]["end_time"] = "2026-03-01T13:00:02+01:00"
    data["steps"][2]["start_time"] = "2026-03-01T12:00:01Z"
    data["steps"][2]["end_time"] = "2026-03-01T07:00:01.500-05:00"
    _, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = api_client.post(reverse("api-traces-ingest"), {"traces": [data]}, format="json")
    assert response.status_code == 201, response.content

    trace = Trace.objects.for_workspace(workspace).get()
    html = (
        login(owner)
        .get(reverse("traces:detail", kwargs={"slug": workspace.slug, "pk": trace.pk}))
        .content.decode()
    )
    # As for the same trace in UTC: the agent step spans the 2 s, the answer starts at 1 s.
    assert 'x="0.00" y="1" width="100.00"' in html
    assert 'x="50.00" y="1" width="25.00"' in html
    assert '<td class="wf-ms">2.0 s</td>' in html and '<td class="wf-ms">500 ms</td>' in html
