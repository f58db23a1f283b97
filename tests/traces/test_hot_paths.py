"""The requests bench/load.py mixes take a fixed number of queries, whatever the rows.

Each is counted at two sizes of the data it reads or writes: an N+1 (a query per row,
per label, per trace ingested) makes the second count larger, and a new query on every
request changes the pinned figure, which the load test's page times depend on.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from evals.models import EvalExecution
from tests.evals.builders import labelled_set, make_eval
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import services
from traces.models import Trace
from traces.services import add_traces_to_eval_set
from workspaces.services import issue_token

# Every page: the user. The session comes from the cache after its first request
# (SESSION_ENGINE cached_db), and so do the user's memberships with their workspaces (the
# one in the URL, and the switcher's list: workspaces.memberships).
PAGE_BASE = 1


def count_queries(call) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    return len(captured), response


def page_queries(client, url) -> int:
    client.get(url)  # the session is cached from here on, as for a user browsing
    n, response = count_queries(lambda: client.get(url))
    assert response.status_code == 200
    return n


@pytest.fixture
def token_client(api_client, workspace, owner):
    _, token = issue_token(workspace=workspace, name="hot", created_by=owner, role="member")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api_client


def _label_all(eval_set, user, traces):
    for trace in traces:
        services.record_feedback(eval_set=eval_set, trace=trace, user=user, rating="positive")


def test_trace_list_and_detail(login, workspace, owner, eval_set, traces):
    client = login(owner)
    list_url = reverse("traces:list", kwargs={"slug": workspace.slug})
    detail_url = reverse("traces:detail", kwargs={"slug": workspace.slug, "pk": traces[0].pk})
    small = page_queries(client, list_url), page_queries(client, detail_url)

    _label_all(eval_set, owner, traces)
    for n in range(3):
        other = EvalSetFactory(workspace=workspace, created_by=owner, name=f"Other {n}")
        add_traces_to_eval_set(eval_set=other, trace_ids=[traces[0].pk])
        _label_all(other, owner, traces[:1])
    for _ in range(60):
        TraceFactory(workspace=workspace)
    # The list: its page of traces, their label counts, the eval sets to add to, the
    # reviewers to assign to, the sources its traces come from. The detail: the trace, its
    # labels, the reviewers, the active sets (with whether each hand-picked one holds it;
    # then one query per filter set).
    assert (page_queries(client, list_url), page_queries(client, detail_url)) == small
    assert small == (PAGE_BASE + 5, PAGE_BASE + 4)


def test_review_card_and_label(login, workspace, owner, eval_set, traces):
    client = login(owner)
    review = reverse("traces:review", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    htmx = {"HX-Request": "true"}

    def label(trace):
        url = reverse(
            "traces:review_label",
            kwargs={"slug": workspace.slug, "pk": eval_set.pk, "trace_pk": trace.pk},
        )
        return count_queries(lambda: client.post(url, {"rating": "negative"}, headers=htmx))

    client.get(review, headers=htmx)
    first_card, _ = count_queries(lambda: client.get(review, headers=htmx))
    first_label, response = label(traces[0])
    assert response.status_code == 200
    _label_all(eval_set, owner, traces[1:8])
    later_card, _ = count_queries(lambda: client.get(review, headers=htmx))
    later_label, _ = label(traces[8])
    assert (later_card, later_label) == (first_card, first_label)
    # The eval set, the reviewer's next trace (assigned first, else any: one query for a
    # hand-picked set), the progress.
    assert first_card == PAGE_BASE + 3
    # The eval set, the trace, its membership of the set; the transaction (begin, the
    # reviewer's label, one savepoint around the insert, the audit row, commit); whether
    # another reviewer disagrees; then the next card's trace and progress.
    assert first_label == PAGE_BASE + 3 + 7 + 1 + 2


def test_matrix_page(login, workspace, owner):
    client = login(owner)

    def matrix_queries(n_traces):
        eval_set, traces = labelled_set(workspace, good=n_traces, bad=n_traces, user=owner)
        for version in (1, 2):
            ev = make_eval(eval_set, version=version)
            EvalExecution.objects.bulk_create(
                EvalExecution(
                    workspace=workspace, eval=ev, trace=t, passed=i % 2 == 0, duration_ms=1
                )
                for i, t in enumerate(traces)
            )
        url = reverse("evals:matrix", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
        return page_queries(client, url)

    assert matrix_queries(2) == matrix_queries(30)


def test_api_ingest(token_client, workspace):
    def ingest(prefix, n):
        body = {
            "traces": [
                {
                    "id": f"{prefix}-{i}",
                    "timestamp": "2026-11-01T00:00:00Z",
                    "input": {"question": f"where is order {i}?"},
                    "output": "On its way.",
                    "steps": [{"id": "a", "type": "agent", "name": "agent"}],
                    "session_id": f"{prefix}-s{i % 3}",
                }
                for i in range(n)
            ]
        }
        n_queries, response = count_queries(
            lambda: token_client.post(reverse("api-traces"), body, format="json")
        )
        assert response.status_code == 201, response.json()
        assert response.json()["created"] == n
        return n_queries

    token_client.post(reverse("api-traces"), {"traces": []}, format="json")  # warm-up
    assert ingest("a", 5) == ingest("b", 200)
    assert Trace.objects.filter(workspace=workspace).count() == 205


def test_api_batch_run(token_client, workspace, owner):
    eval_set, traces = labelled_set(workspace, good=30, bad=30, user=owner)
    ev = make_eval(eval_set, version=1)
    url = reverse("api-eval-run", kwargs={"pk": ev.pk})

    def run(ids):
        n, response = count_queries(
            lambda: token_client.post(url, {"trace_ids": ids}, format="json")
        )
        assert response.status_code == 202, response.json()
        return n

    run([traces[0].pk])  # warm-up
    assert run([t.pk for t in traces[:3]]) == run([t.pk for t in traces])


@pytest.mark.django_db(transaction=True)
def test_otlp_receive(client, workspace):
    """An OTLP export request, as an exporter sends them one after another."""
    from tests.integrations.otlp_helpers import (
        Recorder,
        api_token,
        protobuf_body,
        semconv_agent_trace,
    )

    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_token(workspace)}"}
    recorder = Recorder()

    def receive(traces):
        for _ in range(traces):
            semconv_agent_trace(recorder)
        body = protobuf_body(recorder.take())
        n, response = count_queries(
            lambda: client.post(
                "/v1/traces", body, content_type="application/x-protobuf", **headers
            )
        )
        assert response.status_code == 200
        return n

    receive(1)  # the first request creates the source and notes its first receipt
    one, many = receive(1), receive(20)
    assert Trace.objects.filter(workspace=workspace).count() == 22
    assert one == many
    # The token with its creator's role; the source; the transaction (begin, the stored
    # traces read under lock, the conversations read, the trace rows, the conversations
    # refreshed, commit, with no savepoint of its own inside the request's: PostgreSQL
    # adds the advisory lock and refreshes in one statement, SQLite in two); whether any
    # eval is active. "Last received" was noted by the first request, not rewritten.
    assert one == 1 + 1 + 7 + 1


def test_eval_set_list_page_and_api(login, token_client, workspace, owner):
    """The eval set list, page and API, takes as many queries with one set as with four:
    each row's link names the workspace, not read once per set."""
    client = login(owner)
    page_url = reverse("traces:evalset_list", kwargs={"slug": workspace.slug})

    def counts():
        page = page_queries(client, page_url)
        token_client.get("/api/v1/eval-sets/")
        api, response = count_queries(lambda: token_client.get("/api/v1/eval-sets/"))
        assert response.status_code == 200
        return page, api

    labelled_set(workspace, good=2, bad=1, user=owner)
    one = counts()
    for _ in range(3):
        labelled_set(workspace, good=2, bad=1, user=owner)

    assert counts() == one
