"""The operations dashboard reads its newest failures and its recent traces from indexes.

At 100,000 traces and 300,000 verdicts (bench/scale.py), both were read from the whole
table: the failures by sorting every verdict of the workspace, the recent traces by
reading every trace row, payloads and all (0.8 s of the page's 1.5 s of SQL). Planned here
as the database would run them with large tables: PostgreSQL told not to read a table
whole nor sort it when an index will do (LARGE_TABLE_OFF), SQLite as is.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evals.execution.dashboard import dashboard
from tests.evals.builders import labelled_set, make_eval, record

pytestmark = pytest.mark.django_db


# What a planner avoids on a large table when an index serves: reading it whole, or
# sorting all its rows (on a test's few rows, and with whatever statistics earlier tests
# left, PostgreSQL may pick either).
LARGE_TABLE_OFF = ("enable_seqscan", "enable_bitmapscan", "enable_sort")


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for method in LARGE_TABLE_OFF:
                cursor.execute(f"SET LOCAL {method} = off")
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            for method in LARGE_TABLE_OFF:
                cursor.execute(f"RESET {method}")
            return plan
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        return "\n".join(row[-1] for row in cursor.fetchall())


@pytest.fixture
def statements(workspace, owner):
    eval_set, traces = labelled_set(workspace, good=3, bad=3, user=owner)
    active = make_eval(eval_set, version=1, status="active")
    for n, trace in enumerate(traces):
        record(active, trace, n % 2 == 0, reason="seeded")
    with CaptureQueriesContext(connection) as captured:
        data = dashboard(workspace=workspace)
    assert len(data.recent_failures) == 3 and data.traces_recent == 6
    return [q["sql"] for q in captured]


def test_newest_failures_come_from_the_failures_index(statements):
    (failures,) = [
        sql
        for sql in statements
        if sql.startswith('SELECT "evals_evalexecution"."id"') and "ORDER BY" in sql
    ]

    assert "exec_ws_failures_idx" in _plan(failures)


def test_recent_traces_are_counted_from_an_index_alone(statements):
    counts = [
        sql
        for sql in statements
        if sql.startswith("SELECT COUNT(*)") and 'FROM "traces_trace"' in sql
    ]
    assert len(counts) == 2  # every trace, and the recent ones

    for sql in counts:
        plan = _plan(sql)
        assert "Index Only Scan" in plan or "COVERING INDEX" in plan, plan
