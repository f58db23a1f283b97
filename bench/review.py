"""Benchmark the trace list and the review flow at 100,000 traces and 10,000 labels.

Creates its own PostgreSQL database (dropped at the end), bulk-loads one workspace with
traces and labels, then times requests through the Django test client (middleware,
session, auth, workspace resolution, queries and template rendering: the server's time
for a request, without the network):

- the trace list's first page, a filtered page (tag + no errors), a free-text search
  page and a deep page (a cursor 90 % of the way down);
- the next trace to review (the htmx card);
- recording a label, which also serves the next trace;
- the same two for an eval set built from a saved filter (tag "billing", about a quarter
  of the traces), whose queue runs newest first, with the reviewer through its newest
  5,000 (``--labels`` / 2) traces.

As a user meets it: ``DEBUG`` off, each request opens the way a server's does (Django's
``request_started``/``request_finished`` connection handling, which the test client turns
off, so the per-request connection health check is paid), the cases run interleaved so
the shared machine's noise falls on all of them alike, and the data is vacuumed first, as
autovacuum keeps a live database. The reviewer has labelled the first part of the queue in
order, as the review flow does, so the next trace sits behind 5,000 labelled ones.

    python bench/review.py [--quick] [--traces N] [--labels N] [--runs N]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432)

Goal: every p95 under 100 ms. Last line of output: one JSON object.
"""

import argparse
import datetime as dt
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import percentiles, run_on_scratch_database  # noqa: E402

# Its own per run: two runs at once never drop each other's database.
DB_NAME = f"iofold_bench_review_{os.getpid()}_{int(time.time())}"
GOAL_MS = 100.0
WORDS = [
    "refund",
    "order",
    "shipping",
    "delay",
    "invoice",
    "password",
    "reset",
    "cancel",
    "upgrade",
    "plan",
    "weather",
    "flight",
    "hotel",
    "booking",
    "receipt",
    "warranty",
    "return",
    "exchange",
    "discount",
    "coupon",
    "account",
]
TAGS = ["support", "billing", "prod", "staging", "beta", "mobile", "web", "eu", "us"]


def load(n_traces: int, n_labels: int):
    """Bulk-create a workspace with traces, a hand-picked eval set and labels."""
    from django.utils import timezone

    from accounts.models import User
    from traces.models import EvalSet, EvalSetTrace, Feedback, Trace
    from workspaces.models import Membership, Workspace

    rng = random.Random(7)
    workspace = Workspace.objects.create(name="Bench", slug="bench")
    users = [User.objects.create_user(email=f"r{i}@bench.test", password="x") for i in range(3)]
    for user in users:
        Membership.objects.create(workspace=workspace, user=user, role="owner")
    start = timezone.now() - dt.timedelta(days=90)
    batch = []
    for n in range(n_traces):
        question = " ".join(rng.choices(WORDS, k=8))
        answer = " ".join(rng.choices(WORDS, k=30))
        error = rng.random() < 0.1
        data = {
            "id": f"t{n}",
            "name": f"agent-{n % 7}",
            "input": {"question": question},
            "output": answer,
            "steps": [
                {"id": "a", "parent_id": None, "type": "agent", "name": "agent", "error": None},
                {
                    "id": "b",
                    "parent_id": "a",
                    "type": "tool",
                    "name": "lookup",
                    "error": "timeout" if error else None,
                },
            ],
            "metadata": {},
            "tags": rng.sample(TAGS, 2),
        }
        batch.append(
            Trace(
                workspace=workspace,
                source="demo",
                source_key="demo",
                external_id=f"t{n}",
                name=data["name"],
                timestamp=start + dt.timedelta(seconds=n * 77),
                data=data,
                search_text=f"{question}\n{answer}",
                tags=data["tags"],
                has_error=error,
                step_count=2,
                tool_call_count=1,
                latency_ms=rng.uniform(200, 9000),
                content_hash=f"{n:064d}",
            )
        )
        if len(batch) == 5000:
            Trace.objects.bulk_create(batch)
            batch = []
    Trace.objects.bulk_create(batch)
    eval_set = EvalSet.objects.create(
        workspace=workspace,
        name="Support answers",
        criteria="Answers the question.",
        target_labels=10,
    )
    # Labels: two reviewers over the same hand-picked traces, a third one reviews live.
    per_reviewer = n_labels // 2
    # A random sample, in queue order (picking order): reviewers work through the queue
    # from its start, so their labels cover its head, as they do in use.
    picked_ids = sorted(
        Trace.objects.filter(workspace=workspace)
        .order_by("?")
        .values_list("id", flat=True)[: per_reviewer + per_reviewer // 4 + 1000]
    )
    EvalSetTrace.objects.bulk_create(
        EvalSetTrace(workspace=workspace, eval_set=eval_set, trace_id=pk) for pk in picked_ids
    )
    ratings = ["positive", "negative", "neutral"]
    feedback = []
    for offset, user in ((0, users[0]), (per_reviewer // 4, users[1])):
        for pk in picked_ids[offset : offset + per_reviewer]:
            feedback.append(
                Feedback(
                    workspace=workspace,
                    eval_set=eval_set,
                    trace_id=pk,
                    user=user,
                    rating=rng.choices(ratings, weights=[5, 4, 1])[0],
                )
            )
    filter_set = EvalSet.objects.create(
        workspace=workspace,
        name="Billing answers",
        criteria="Answers billing questions.",
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={"tag": "billing"},
    )
    newest = Trace.objects.in_eval_set(filter_set).order_by("-timestamp", "-id")
    for pk in newest.values_list("id", flat=True)[:per_reviewer]:
        feedback.append(
            Feedback(
                workspace=workspace,
                eval_set=filter_set,
                trace_id=pk,
                user=users[0],
                rating=rng.choices(ratings, weights=[5, 4, 1])[0],
            )
        )
    Feedback.objects.bulk_create(feedback, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        # Settle the freshly loaded tables as autovacuum would (visibility map, hint bits,
        # statistics), so the first timed case does not pay for the bulk load.
        cursor.execute("VACUUM ANALYZE")
    return workspace, eval_set, filter_set, users


def timed_rounds(cases: dict, runs: int) -> dict:
    """Run every case once per round, ``runs`` rounds after a warm-up round.

    Each case returns its server time in seconds. Interleaving spreads the shared
    machine's load over all cases instead of letting it land on whichever runs first.
    """
    for fn in cases.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            samples[name].append(fn() * 1000)
    return {name: percentiles(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--traces", type=int)
    parser.add_argument("--labels", type=int)
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    n_traces = args.traces or (20_000 if args.quick else 100_000)
    n_labels = args.labels or (2_000 if args.quick else 10_000)
    runs = args.runs or (20 if args.quick else 60)
    run_on_scratch_database(DB_NAME, lambda: run(n_traces, n_labels, runs, args))


def run(n_traces: int, n_labels: int, runs: int, args) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.db import close_old_connections
    from django.test import Client
    from django.urls import reverse

    from traces.models import Trace
    from traces.selectors import encode_cursor, next_trace_for_review

    # Serve as production does: no debug templates, no query log. The test environment's
    # instrumented template rendering (context capture) is left out for the same reason.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    from django.template import engines

    # The engine is built lazily, so it sees DEBUG off: no debug template machinery.
    assert not engines["django"].engine.debug
    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    workspace, eval_set, filter_set, users = load(n_traces, n_labels)
    load_s = time.perf_counter() - t0
    print(f"loaded {n_traces} traces and {n_labels} labels in {load_s:.1f} s")

    client = Client()
    reviewer = users[0]
    client.force_login(reviewer)
    slug = workspace.slug
    list_url = reverse("traces:list", kwargs={"slug": slug})
    deep_trace = Trace.objects.for_workspace(workspace).order_by("-timestamp", "-id")[
        int(n_traces * 0.9)
    ]
    deep_cursor = encode_cursor(deep_trace)
    review_url = reverse("traces:review", kwargs={"slug": slug, "pk": eval_set.pk})
    filter_review_url = reverse("traces:review", kwargs={"slug": slug, "pk": filter_set.pk})
    htmx = {"HX-Request": "true"}

    def serve(send):
        """Time one request with the connection handling a server does around it."""
        close_old_connections()
        started = time.perf_counter()
        response = send()
        elapsed = time.perf_counter() - started
        close_old_connections()
        assert response.status_code == 200, response.status_code
        return elapsed

    def get(url, params=None, headers=None):
        return lambda: serve(lambda: client.get(url, params or {}, headers=headers or {}))

    def label(in_set):
        def send():
            # Which trace the card shows is the browser's business: looked up untimed.
            trace = next_trace_for_review(eval_set=in_set, user=reviewer)
            url = reverse(
                "traces:review_label",
                kwargs={"slug": slug, "pk": in_set.pk, "trace_pk": trace.pk},
            )
            return serve(lambda: client.post(url, {"rating": "positive", "note": ""}, headers=htmx))

        return send

    results = timed_rounds(
        {
            "list_first_page": get(list_url),
            "list_filtered": get(list_url, {"tag": "billing", "has_error": "false"}),
            "list_search": get(list_url, {"q": "warranty coupon"}),
            "list_unlabelled": get(list_url, {"label": "unlabelled"}),
            "list_deep_page": get(list_url, {"cursor": deep_cursor}),
            "next_trace": get(review_url, headers=htmx),
            "record_label": label(eval_set),
            "filter_next_trace": get(filter_review_url, headers=htmx),
            "filter_record_label": label(filter_set),
        },
        runs,
    )
    print(f"{'case':<20}{'p50 ms':>9}{'p95 ms':>9}")
    for name, figures in results.items():
        print(f"{name:<20}{figures['p50_ms']:>9}{figures['p95_ms']:>9}")
    worst = max(f["p95_ms"] for f in results.values())
    command = "python bench/review.py" + (" --quick" if args.quick else "")
    print(f"command: {command}  (traces={n_traces} labels={n_labels} runs={runs})")
    print(
        json.dumps(
            {
                "traces": n_traces,
                "labels": n_labels,
                "runs": runs,
                **{f"{k}_p95_ms": v["p95_ms"] for k, v in results.items()},
                **{f"{k}_p50_ms": v["p50_ms"] for k, v in results.items()},
                "worst_p95_ms": worst,
                "goal_p95_ms": GOAL_MS,
                "goal_met": worst < GOAL_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
