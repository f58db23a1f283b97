"""Benchmark the trace list and the review flow at 100,000 traces and 10,000 labels.

Creates its own PostgreSQL database (dropped at the end), bulk-loads one workspace with
traces and labels, then times requests through the Django test client (middleware,
session, auth, workspace resolution, queries and template rendering: the server's time
for a request, without the network):

- the trace list's first page, a filtered page (tag + no errors), a free-text search
  page and a deep page (a cursor 90 % of the way down);
- the next trace to review (the htmx card);
- recording a label, which also serves the next trace.

    python bench/review.py [--quick] [--traces N] [--labels N] [--runs N]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432)

Goal: every p95 under 100 ms. Last line of output: one JSON object.
"""

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "iofold_bench_review"
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


def admin_connection(pg_url: str):
    import psycopg

    return psycopg.connect(f"{pg_url}/postgres", autocommit=True)


def create_database(pg_url: str) -> None:
    with admin_connection(pg_url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def drop_database(pg_url: str) -> None:
    from django.db import connections

    connections.close_all()
    with admin_connection(pg_url) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


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
    picked_ids = list(
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
    Feedback.objects.bulk_create(feedback, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return workspace, eval_set, users


def timed(fn, runs: int) -> dict:
    fn()  # warm caches and the connection
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1),
    }


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
    pg_url = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")

    create_database(pg_url)
    os.environ["DATABASE_URL"] = f"{pg_url}/{DB_NAME}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iofold.settings")
    import django

    django.setup()
    try:
        run(n_traces, n_labels, runs, args)
    finally:
        drop_database(pg_url)


def run(n_traces: int, n_labels: int, runs: int, args) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from traces.models import Trace
    from traces.selectors import encode_cursor, next_trace_for_review

    # Serve as production does: no debug templates, no query log. The test environment's
    # instrumented template rendering (context capture) is left out for the same reason.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    workspace, eval_set, users = load(n_traces, n_labels)
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
    htmx = {"HX-Request": "true"}

    def get(url, params=None, headers=None):
        response = client.get(url, params or {}, headers=headers or {})
        assert response.status_code == 200, response.status_code
        return response

    def label():
        trace = next_trace_for_review(eval_set=eval_set, user=reviewer)
        url = reverse(
            "traces:review_label", kwargs={"slug": slug, "pk": eval_set.pk, "trace_pk": trace.pk}
        )
        started = time.perf_counter()
        response = client.post(url, {"rating": "positive", "note": ""}, headers=htmx)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.status_code
        return elapsed

    def timed_label(runs: int) -> dict:
        label()
        samples = sorted(label() * 1000 for _ in range(runs))
        return {
            "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1),
        }

    results = {
        "list_first_page": timed(lambda: get(list_url), runs),
        "list_filtered": timed(
            lambda: get(list_url, {"tag": "billing", "has_error": "false"}), runs
        ),
        "list_search": timed(lambda: get(list_url, {"q": "warranty coupon"}), runs),
        "list_unlabelled": timed(lambda: get(list_url, {"label": "unlabelled"}), runs),
        "list_deep_page": timed(lambda: get(list_url, {"cursor": deep_cursor}), runs),
        "next_trace": timed(lambda: get(review_url, headers=htmx), runs),
        "record_label": timed_label(runs),
    }
    print(f"{'case':<18}{'p50 ms':>9}{'p95 ms':>9}")
    for name, figures in results.items():
        print(f"{name:<18}{figures['p50_ms']:>9}{figures['p95_ms']:>9}")
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
