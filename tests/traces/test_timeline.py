"""The trace page's timeline: each step's bar placed on the trace's span; errors open."""

from django.urls import reverse

from tests.traces.factories import TraceFactory, trace_data
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
