"""Benchmark the comparison matrix at 5,000 labelled traces by 10 eval versions.

Creates its own PostgreSQL database (dropped at the end), bulk-loads one eval set with
labelled traces, ten versions and one execution per (version, trace), then times the
matrix page through the Django test client (middleware, session, workspace resolution,
queries and template rendering: the server's time, without the network), counting
queries per request:

- the first page, all versions;
- a deep page (90 % of the way down);
- only disagreements;
- a date range with three versions;
- the htmx table fragment (filters changed in place);
- a cell drill-down;
- the first page right after a reviewer changed a label (the change itself untimed): the
  cached base is patched with the changed traces' labels, the verdicts not read again,
  and the cached view updated for those traces only;
- the first page with an empty cache and a new process (a restarted server): nothing
  cached; and for the uncached selector, figures load moves less: the process's CPU time,
  each statement's execution time in PostgreSQL (EXPLAIN ANALYZE) and the PostgreSQL
  backend's CPU time (a local server's /proc).

``--continuous N`` adds N unlabelled traces that the active version judged, as
continuous evaluation leaves behind: the matrix must not slow down with them.

    python bench/matrix.py [--quick] [--traces N] [--versions N] [--runs N] [--continuous N]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432)

Each case also reports this process's CPU time per request (median), which load moves
less than wall time. Goal: every p95 under 200 ms. Last line of output: one JSON object.
"""

import argparse
import datetime as dt
import gc
import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import percentiles, run_on_scratch_database  # noqa: E402

# Unique per run: two runs at once never drop each other's database.
DB_NAME = f"iofold_bench_matrix_{os.getpid()}_{int(time.time())}"
GOAL_MS = 200.0


def load(n_traces: int, n_versions: int, n_continuous: int = 0):
    """Bulk-create a workspace, labelled traces, versions and their executions."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from evals.models import Eval, EvalExecution
    from traces.models import EvalSet, Feedback, Trace
    from workspaces.models import Membership, Workspace

    rng = random.Random(7)
    workspace = Workspace.objects.create(name="Bench", slug="bench")
    users = [User.objects.create_user(email=f"r{i}@bench.test", password="x") for i in range(2)]
    for user in users:
        Membership.objects.create(workspace=workspace, user=user, role="owner")
    eval_set = EvalSet.objects.create(
        workspace=workspace, name="Support answers", criteria="Answers the question."
    )
    start = timezone.now() - dt.timedelta(days=60)

    def make_trace(n: int, source: str) -> Trace:
        return Trace(
            workspace=workspace,
            source=source,
            source_key="demo",
            external_id=f"t{n}",
            name=f"agent-{n % 7}",
            timestamp=start + dt.timedelta(seconds=n * 997),
            data={"id": f"t{n}", "output": "answer " * 40, "steps": []},
            content_hash=f"{n:064d}",
        )

    traces = [make_trace(n, rng.choice(["langfuse", "upload"])) for n in range(n_traces)]
    Trace.objects.bulk_create(traces, batch_size=5000)
    labels = {}
    feedback = []
    for trace in traces:
        rating = rng.choices(["positive", "negative", "neutral"], weights=[6, 3, 1])[0]
        labels[trace.pk] = rating
        for user in users:
            feedback.append(
                Feedback(
                    workspace=workspace,
                    eval_set=eval_set,
                    trace=trace,
                    user=user,
                    rating=rating,
                    note="too vague" if rng.random() < 0.2 else "",
                )
            )
    Feedback.objects.bulk_create(feedback, batch_size=5000)
    # Labels accumulate over weeks: none of them is the one a reviewer changes just now.
    Feedback.objects.filter(eval_set=eval_set).update(created_at=start, updated_at=start)
    code = "def eval_fn(trace):\n    return True, 'ok'\n"
    versions = [
        Eval.objects.create(
            workspace=workspace,
            eval_set=eval_set,
            version=v,
            code=code + f"# v{v}\n",
            status="active" if v == n_versions else "draft",
            agreement=0.6 + v * 0.03,
        )
        for v in range(1, n_versions + 1)
    ]
    executions = []
    for v, version in enumerate(versions, start=1):
        accuracy = 0.6 + v * 0.035
        for trace in traces:
            right = labels[trace.pk] == "positive"
            roll = rng.random()
            passed = None if roll < 0.01 else (right if roll < accuracy else not right)
            executions.append(
                EvalExecution(
                    workspace=workspace,
                    eval=version,
                    trace=trace,
                    passed=passed,
                    reason="Looks fine" if passed else "Too vague",
                    error="" if passed is not None else "KeyError: 'x' (line 2 of the eval code)",
                    duration_ms=rng.uniform(0.1, 4),
                )
            )
        if len(executions) >= 20_000:
            EvalExecution.objects.bulk_create(executions, batch_size=5000)
            executions = []
    EvalExecution.objects.bulk_create(executions, batch_size=5000)
    # Continuous evaluation: the active version judged traces nobody labelled.
    for start_n in range(n_traces, n_traces + n_continuous, 5000):
        judged = Trace.objects.bulk_create(
            [
                make_trace(n, "langfuse")
                for n in range(start_n, min(n_traces + n_continuous, start_n + 5000))
            ]
        )
        EvalExecution.objects.bulk_create(
            EvalExecution(
                workspace=workspace,
                eval=versions[-1],
                trace=trace,
                passed=rng.random() < 0.7,
                reason="Looks fine",
                duration_ms=1.0,
            )
            for trace in judged
        )
    with connection.cursor() as cursor:
        # Settle the freshly loaded tables as autovacuum would (visibility map, statistics).
        cursor.execute("VACUUM ANALYZE")
    return workspace, eval_set, versions, traces, users


def timed(fn, runs: int, before=None) -> dict:
    """Time ``fn`` ``runs`` times; ``before``, if given, runs untimed ahead of each call.

    Wall time, and this process's CPU time (median), which load stretches far less."""
    import statistics

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    before = before or (lambda: None)
    before()
    fn()  # warm caches and the connection
    samples, cpu = [], []
    for _ in range(runs):
        before()
        started, cpu_started = time.perf_counter(), time.process_time()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    before()
    with CaptureQueriesContext(connection) as queries:
        fn()
    return {
        **percentiles(samples),
        "cpu_ms": round(statistics.median(cpu), 1),
        "queries": len(queries.captured_queries),
    }


def cold_breakdown(eval_set, restart, runs: int) -> dict:
    """The uncached selector's cost in figures that load moves less than wall time: the
    process's CPU time, and each statement's execution time inside PostgreSQL."""
    import statistics

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from evals.matrix.selectors import comparison_matrix

    cpu = []
    for _ in range(runs):
        restart()
        started = time.process_time()
        comparison_matrix(eval_set=eval_set)
        cpu.append((time.process_time() - started) * 1000)
    restart()
    # In a transaction the index reads its statements one after the other, all on this
    # connection, where they are captured (outside one, the verdicts go on a second).
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        comparison_matrix(eval_set=eval_set)
    queries = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            times = []
            for _ in range(3):
                cursor.execute(f"EXPLAIN (ANALYZE, TIMING OFF) {sql}")
                last = cursor.fetchall()[-1][0]  # "Execution Time: 12.345 ms"
                times.append(float(last.split(":")[1].split()[0]))
            queries.append((" ".join(sql.split())[:90], round(statistics.median(times), 1)))
    return {
        "cpu_ms": round(statistics.median(cpu), 1),
        "queries": queries,
        "pg_cpu_ms": _server_cpu_per_build(eval_set, restart, runs),
    }


def _server_cpu_per_build(eval_set, restart, runs: int) -> float | None:
    """PostgreSQL's CPU time per uncached selector: the backend's own clock (its
    /proc entry), which load does not stretch as it stretches the statements' wall
    time. In a transaction, so every statement runs on this one backend, and without
    parallel workers (their time would not show). None when the server is not local."""
    from django.db import connection, transaction

    from evals.matrix.selectors import comparison_matrix

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute("SELECT pg_backend_pid()")
        stat = Path(f"/proc/{cursor.fetchone()[0]}/stat")
        try:
            if not stat.with_name("comm").read_text().startswith("postgres"):
                return None
        except OSError:
            return None

        def ticks() -> int:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime

        total = 0
        for _ in range(runs):
            restart()
            before = ticks()
            comparison_matrix(eval_set=eval_set)
            total += ticks() - before
    return round(1000 * total / os.sysconf("SC_CLK_TCK") / runs, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--traces", type=int)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--runs", type=int)
    parser.add_argument(
        "--continuous", type=int, default=0, help="unlabelled traces judged by the active version"
    )
    args = parser.parse_args()
    n_traces = args.traces or (2_000 if args.quick else 5_000)
    runs = args.runs or (15 if args.quick else 50)
    run_on_scratch_database(DB_NAME, lambda: run(n_traces, args.versions, runs, args))


def run(n_traces: int, n_versions: int, runs: int, args) -> None:
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from evals.matrix.selectors import MATRIX_PAGE_SIZE

    # Serve as production does: no debug templates, no query log.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    workspace, eval_set, versions, traces, users = load(n_traces, n_versions, args.continuous)
    print(
        f"loaded {n_traces} traces x {n_versions} versions "
        f"({n_traces * n_versions} executions), {args.continuous} more judged unlabelled, "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    client = Client()
    client.force_login(users[0])
    slug = workspace.slug
    matrix_url = reverse("evals:matrix", kwargs={"slug": slug, "pk": eval_set.pk})
    deep_page = max(1, int(n_traces * 0.9) // MATRIX_PAGE_SIZE)
    middle = traces[len(traces) // 2].timestamp.date()
    three = [str(v.pk) for v in versions[-3:]]
    cell_url = reverse(
        "evals:cell", kwargs={"slug": slug, "pk": versions[0].pk, "trace_pk": traces[42].pk}
    )
    htmx = {"HX-Request": "true"}

    def get(url, params=None, headers=None):
        response = client.get(url, params or {}, headers=headers or {})
        assert response.status_code == 200, response.status_code
        return response

    from evals.matrix.index import forget_parts_seen
    from evals.matrix.selectors import comparison_matrix
    from evals.matrix.types import MatrixFilters
    from traces.models import Feedback

    labels = itertools.cycle(Feedback.objects.filter(eval_set=eval_set, user=users[0])[:500])
    # A server holds none of the loaded rows: let them go and collect the loading's garbage
    # once, or the first full collection (~80 ms over the loaded objects) lands inside the
    # first case's samples. Requests' own collections still count.
    del traces
    gc.collect()

    from django.core.cache import cache

    def restart():
        """An empty cache in a new process: the shared cache and the process's parts."""
        cache.clear()
        forget_parts_seen()

    def relabel():
        """A reviewer changes a label, as the review page's save does."""
        feedback = next(labels)
        feedback.rating = "negative" if feedback.rating == "positive" else "positive"
        feedback.save(update_fields=["rating", "updated_at"])

    results = {
        "selector_only": timed(lambda: comparison_matrix(eval_set=eval_set), runs),
        "selector_disagreements": timed(
            lambda: comparison_matrix(
                eval_set=eval_set, filters=MatrixFilters(only_disagreements=True)
            ),
            runs,
        ),
        "first_page": timed(lambda: get(matrix_url), runs),
        "deep_page": timed(lambda: get(matrix_url, {"page": deep_page}), runs),
        "disagreements": timed(lambda: get(matrix_url, {"disagreements": "1"}), runs),
        "range_3_versions": timed(
            lambda: get(
                matrix_url,
                {"from": str(middle - dt.timedelta(days=10)), "to": str(middle), "v": three},
            ),
            runs,
        ),
        "htmx_table": timed(
            lambda: get(matrix_url, {"disagreements": "1", "page": 3}, headers=htmx), runs
        ),
        "cell": timed(lambda: get(cell_url, headers=htmx), runs),
        "after_label": timed(lambda: get(matrix_url), runs, before=relabel),
        "cold_cache": timed(lambda: get(matrix_url), runs, before=restart),
    }
    breakdown = cold_breakdown(eval_set, restart, runs)
    print(f"{'case':<24}{'p50 ms':>9}{'p95 ms':>9}{'cpu ms':>9}{'queries':>9}")
    for name, figures in results.items():
        print(
            f"{name:<24}{figures['p50_ms']:>9}{figures['p95_ms']:>9}"
            f"{figures['cpu_ms']:>9}{figures['queries']:>9}"
        )
    print("cold selector, less sensitive to load: CPU time of this process, and each query's")
    print("execution time in PostgreSQL (EXPLAIN ANALYZE, TIMING OFF; median of 3)")
    print(f"  python cpu ms (median): {breakdown['cpu_ms']}")
    print(
        f"  postgres backend cpu ms (mean, one connection, no parallel workers): "
        f"{breakdown['pg_cpu_ms']}"
    )
    for sql, ms in breakdown["queries"]:
        print(f"  {ms:>8} ms  {sql}")
    worst = max(f["p95_ms"] for f in results.values())
    command = "python bench/matrix.py" + (" --quick" if args.quick else "")
    if args.continuous:
        command += f" --continuous {args.continuous}"
    print(f"command: {command}  (traces={n_traces} versions={n_versions} runs={runs})")
    print(
        json.dumps(
            {
                "traces": n_traces,
                "versions": n_versions,
                "continuous": args.continuous,
                "runs": runs,
                **{f"{k}_p95_ms": v["p95_ms"] for k, v in results.items()},
                **{f"{k}_p50_ms": v["p50_ms"] for k, v in results.items()},
                **{f"{k}_cpu_ms": v["cpu_ms"] for k, v in results.items()},
                **{f"{k}_queries": v["queries"] for k, v in results.items()},
                "cold_cpu_ms": breakdown["cpu_ms"],
                "cold_pg_cpu_ms": breakdown["pg_cpu_ms"],
                "cold_sql_ms": round(sum(ms for _, ms in breakdown["queries"]), 1),
                "worst_p95_ms": worst,
                "goal_p95_ms": GOAL_MS,
                "goal_met": worst < GOAL_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
