"""On SQLite, the embedded default, ingest finds its rows by key: it never walks a workspace.

SQLite plans without statistics. Asked for rows in the model's order (traces newest
first), it walks the workspace's list index to spare itself a sort rather than look each
key up; and a trace's columns after its payload cost a read of the payload. Either made
every batch cost more as the database grew (OTLP bench: 97 -> 297 ms of CPU per 1,000
spans from an empty database to 19,000 traces). Each statement of an ingest is planned
here, as SQLite would run it.
"""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integrations.otlp.receiver import get_or_create_otlp_source, receive_spans
from iofold.pipeline import ingest_traces
from tests.integrations.otlp_helpers import Recorder, protobuf_body, semconv_agent_trace
from tests.traces.factories import trace_data

pytestmark = pytest.mark.django_db

# A step that reads a table through an index on the workspace alone: all its rows.
WORKSPACE_WALK = re.compile(
    r"(SCAN|SEARCH) (traces_trace|traces_conversation)\b.*\(workspace_id=\?\)$"
)


def _plans(captured) -> dict[str, list[str]]:
    plans = {}
    with connection.cursor() as cursor:
        for query in captured:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                continue
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
            plans[sql] = [row[-1] for row in cursor.fetchall()]
    return plans


def _walks(plans: dict[str, list[str]]) -> list[str]:
    return [
        f"{sql[:120]}: {step}"
        for sql, steps in plans.items()
        for step in steps
        if WORKSPACE_WALK.search(step) or re.match(r"SCAN (traces_trace|U0)\b", step)
    ]


@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's query plans")


def _turns(start: int, count: int) -> list[dict]:
    traces = []
    for n in range(start, start + count):
        data = trace_data(n)
        data.update(id=f"turn-{n}", session_id=f"s-{n % 3}")
        traces.append(data)
    return traces


def test_api_ingest_reads_traces_and_conversations_by_key(sqlite_only, workspace):
    ingest_traces(workspace=workspace, source="api", traces=_turns(0, 6))
    changed = _turns(3, 6)  # three stored (changed below) and three new, in stored sessions
    for data in changed:
        data["output"] = "changed"
    with CaptureQueriesContext(connection) as captured:
        result = ingest_traces(workspace=workspace, source="api", traces=changed)
    assert (result.created, result.updated) == (3, 3)

    plans = _plans(captured)
    assert _walks(plans) == []
    # The conversations' figures come from the turns index alone, not the trace rows.
    (figures,) = [steps for sql, steps in plans.items() if sql.startswith("UPDATE")]
    turns = [step for step in figures if step.startswith("SEARCH U0")]
    assert turns and all(
        "USING COVERING INDEX trace_conversation_turns_idx" in step for step in turns
    ), figures


def test_otlp_receive_reads_stored_traces_by_key(sqlite_only, workspace):
    integration = get_or_create_otlp_source(workspace=workspace)
    recorder = Recorder()

    def receive():
        for _ in range(3):
            semconv_agent_trace(recorder)
        request = ExportTraceServiceRequest.FromString(protobuf_body(recorder.take()))
        receive_spans(integration=integration, request=request)

    receive()
    with CaptureQueriesContext(connection) as captured:
        receive()
    assert _walks(_plans(captured)) == []


def test_trace_list_sources_are_read_by_index_probes(sqlite_only, workspace):
    from traces.selectors import source_choices

    ingest_traces(workspace=workspace, source="api", traces=_turns(0, 6))
    with CaptureQueriesContext(connection) as captured:
        assert source_choices(workspace) == [("api", "API")]
    (query,) = captured
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
        steps = [row[-1] for row in cursor.fetchall()]
    # Every read is a probe of the unique (workspace, source_key, external_id) index: the
    # least key (a min/max lookup), the next key, a key's first trace; none walks the
    # workspace's traces, as DISTINCT would.
    reads = [step for step in steps if "traces_trace" in step]
    assert len(reads) == 3
    assert all(re.match(r"SEARCH traces_trace USING .*INDEX sqlite_autoindex", s) for s in reads)
    assert "source_key" in reads[1] and "source_key" in reads[2]
