"""The eval set page's weight per label row: each row's edit form is fetched when opened,
not sent with the page (200 rows of inline forms made an 871 KB page)."""

from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces.services import add_traces_to_eval_set, record_feedback

# One row: the trace's link, its input and output snippets, the label, the reviewer's entry
# with an Edit link, the remove-from-set button: 1,427 B. Each entry's inline edit form made
# it 2,733 B (and a row with several reviewers several times that).
MAX_BYTES_PER_ROW = 1_600


def _page_size(client, workspace, owner, rows: int) -> tuple[int, str]:
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, source_kind="manual")
    traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(rows)]
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    for trace in traces:
        record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
    response = client.get(eval_set.get_absolute_url())
    assert response.status_code == 200
    assert response.content.decode().count('data-testid="label-row"') == rows
    return len(response.content), response.content.decode()


def test_label_rows_weigh_little_each(login, workspace, owner):
    client = login(owner)
    size_10, _ = _page_size(client, workspace, owner, 10)
    size_200, page = _page_size(client, workspace, owner, 200)
    per_row = (size_200 - size_10) / 190
    assert per_row < MAX_BYTES_PER_ROW, f"{per_row:.0f} B per row ({size_200} B for 200)"
    # Every label can still be edited: its Edit link is there, its form is not.
    assert page.count('data-testid="edit-label"') == 200
    assert 'data-testid="rate-form"' not in page
