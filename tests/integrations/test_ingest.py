"""traces.ingest.upsert_traces: the natural key, change detection and denormalised columns."""

import json
import re
import threading

import pytest
from django.db import connection
from django.urls import reverse

from evals.execution.runs import execute_run, start_run
from evals.models import EvalExecution
from integrations.adapters.base import parse_time
from integrations.demo import create_demo_traces, demo_trace
from tests.evals.builders import labelled_set, make_eval
from tests.traces.factories import trace_data
from traces.ingest import prepare_traces, upsert_traces
from traces.models import Trace

pytestmark = pytest.mark.django_db

TRACE = {
    "id": "run-1",
    "name": "support-agent",
    "timestamp": "2026-11-20T10:00:00Z",
    "input": {"q": "where is my order?"},
    "output": {"a": "shipped"},
    "steps": [
        {"id": "1", "type": "llm", "name": "plan",
         "output": {"role": "assistant", "tool_calls": [{"id": "c"}, {"id": "d"}]}},
        {"id": "2", "parent_id": "1", "type": "span", "name": "lookup", "error": "Timeout"},
    ],
    "tags": ["prod"],
}  # fmt: skip


def test_created_then_unchanged_then_updated(workspace):
    first = upsert_traces(workspace=workspace, source="api", traces=[TRACE])
    again = upsert_traces(workspace=workspace, source="api", traces=[TRACE])
    changed = upsert_traces(
        workspace=workspace, source="api", traces=[{**TRACE, "output": {"a": "lost"}}]
    )

    assert (first.created, again.unchanged, changed.updated) == (1, 1, 1)
    assert first.trace_ids == changed.trace_ids
    assert again.trace_ids == []
    assert Trace.objects.for_workspace(workspace).count() == 1


def test_denormalised_columns_are_filled(workspace):
    upsert_traces(workspace=workspace, source="upload", traces=[TRACE])

    trace = Trace.objects.for_workspace(workspace).get()
    assert trace.name == "support-agent"
    assert trace.has_error
    assert trace.step_count == 2
    assert trace.tool_call_count == 2  # requested by the LLM, no tool steps recorded
    assert trace.tags == ["prod"]
    assert "where is my order" in trace.search_text
    assert trace.data["steps"][0]["parent_id"] is None  # defaults filled in for evals
    assert trace.source_key == "upload"


@pytest.mark.parametrize(
    "sent",
    [
        "2026-11-20T10:00:00.123Z",  # as normalisers write it: sent to the database as is
        "2026-11-20T10:00:00.000Z",
        "2026-11-20T11:00:00.123456+01:00",
        "2026-11-20T10:00:00",  # no zone: UTC
        "2026-W47-5T10:00:00.123Z",  # an ISO week date PostgreSQL would not read
    ],
)
def test_a_trace_time_is_stored_as_the_instant_it_names_whatever_its_shape(workspace, sent):
    upsert_traces(workspace=workspace, source="api", traces=[{**TRACE, "timestamp": sent}])

    stored = Trace.objects.for_workspace(workspace).get().timestamp
    assert stored == parse_time(sent)


def test_same_id_from_two_sources_is_two_traces(workspace, other_workspace):
    upsert_traces(workspace=workspace, source="api", traces=[TRACE])
    upsert_traces(workspace=workspace, source="upload", traces=[TRACE])
    upsert_traces(workspace=other_workspace, source="api", traces=[TRACE])

    assert Trace.objects.for_workspace(workspace).count() == 2
    assert Trace.objects.for_workspace(other_workspace).count() == 1


def test_duplicate_ids_in_one_batch_keep_the_last(workspace):
    result = upsert_traces(
        workspace=workspace, source="api", traces=[TRACE, {**TRACE, "name": "second"}]
    )

    assert (result.created, result.duplicates) == (1, 1)
    assert Trace.objects.for_workspace(workspace).get().name == "second"


def test_a_batch_prepared_on_another_thread_is_stored_like_the_raw_batch(workspace):
    # A sync prepares its next page on the fetching thread, which has no database.
    batch = [TRACE, {**TRACE, "name": "second"}, {**TRACE, "id": "run-2", "timestamp": "no"}]
    prepared = []
    reader = threading.Thread(target=lambda: prepared.append(prepare_traces(batch)))
    reader.start()
    reader.join()

    result = upsert_traces(workspace=workspace, source="api", traces=prepared[0])
    again = upsert_traces(workspace=workspace, source="api", traces=batch)

    assert (result.created, result.duplicates, result.failed) == (1, 1, 1)
    assert result.errors == [(2, "field 'timestamp' is not an ISO-8601 date-time")]
    assert (again.unchanged, again.duplicates, again.failed) == (1, 1, 1)
    assert Trace.objects.for_workspace(workspace).get().name == "second"


def test_a_payload_is_stored_as_its_canonical_encoding_whatever_its_text_holds(workspace):
    # On PostgreSQL the payloads travel beside the rows' JSON document, as a text array:
    # quotes, backslashes, braces and any character must arrive as the very text hashed.
    odd = 'say "hi" \\ {"a": [1]} \u2028 \U0001f600 é , ) ( '
    sent = [
        {**TRACE, "id": f"run-{n}", "input": {"q": odd * n, odd: [odd, n]}, "name": odd[:n]}
        for n in range(1, 4)
    ]
    upsert_traces(workspace=workspace, source="api", traces=sent)

    encodings = prepare_traces(sent).encodings
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT external_id, CAST(data AS text) FROM traces_trace WHERE workspace_id = %s",
            [workspace.pk],
        )
        stored = dict(cursor.fetchall())
    parsed = {external_id: json.loads(text) for external_id, text in stored.items()}
    assert parsed == {external_id: json.loads(text) for external_id, text in encodings.items()}
    if connection.vendor == "postgresql":  # stored as that very text (traces.fields)
        assert stored == encodings
    by_id = {t.external_id: t for t in Trace.objects.for_workspace(workspace)}
    assert by_id["run-2"].data["input"]["q"] == odd * 2 and by_id["run-3"].name == odd[:3]


def test_on_ingested_gets_new_and_changed_ids_after_commit(
    workspace, django_capture_on_commit_callbacks
):
    seen = []
    with django_capture_on_commit_callbacks(execute=True):
        result = upsert_traces(
            workspace=workspace, source="api", traces=[TRACE], on_ingested=seen.append
        )
    with django_capture_on_commit_callbacks(execute=True):
        upsert_traces(workspace=workspace, source="api", traces=[TRACE], on_ingested=seen.append)

    assert seen == [result.trace_ids]


def test_demo_traces_are_deterministic_and_varied(workspace):
    assert demo_trace(3) == demo_trace(3)
    first = create_demo_traces(workspace=workspace, count=40)
    second = create_demo_traces(workspace=workspace, count=40)

    assert (first.created, second.unchanged) == (40, 40)
    traces = Trace.objects.for_workspace(workspace)
    assert traces.filter(source="demo").count() == 40
    assert 0 < traces.filter(has_error=True).count() < 40
    assert traces.filter(tool_call_count__gt=0).count() > 20
    scenarios = {t.data["metadata"]["scenario"] for t in traces}
    assert {"good", "tool_error"} <= scenarios


# Numbers as a sender wrote them; PostgreSQL's jsonb printed 1e+20 back as a 21-digit
# integer, which an eval then received as an int.
NUMBERS = {"big": 1e20, "small": 1.5e-07, "whole": 2.0, "huge": 12345678901234567890}
NUMBERS_CODE = """def eval_fn(trace):
    numbers = trace["metadata"]
    return True, repr([numbers[k] for k in ("big", "small", "whole", "huge")])
"""


def test_ingested_numbers_reach_the_eval_and_the_trace_page_as_sent(login, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=0, bad=0)
    sent = {**trace_data(3), "id": "numbers", "metadata": NUMBERS}
    (trace_id,) = upsert_traces(workspace=workspace, source="api", traces=[sent]).trace_ids
    eval = make_eval(eval_set, version=1, code=NUMBERS_CODE)
    run = start_run(eval=eval, trace_ids=[trace_id], trigger="api", enqueue=False)

    execute_run(run_id=run.pk)

    expected = repr([NUMBERS[k] for k in ("big", "small", "whole", "huge")])
    assert EvalExecution.objects.get(eval=eval, trace_id=trace_id).reason == expected
    stored = Trace.objects.get(pk=trace_id).data["metadata"]
    assert repr([stored[k] for k in ("big", "small", "whole", "huge")]) == expected
    page = reverse("traces:detail", kwargs={"slug": workspace.slug, "pk": trace_id})
    html = login(owner).get(page).content.decode()
    for key, number in NUMBERS.items():
        assert re.search(rf"&quot;{key}&quot;: {re.escape(json.dumps(number))}[,\n]", html)
