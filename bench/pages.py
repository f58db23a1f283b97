"""Queries and server CPU time per request for the pages and API calls bench/load.py mixes.

Load-independent figures beside the load test's wall-clock ones: on a shared machine a
request's latency depends on who else runs, its SQL query count and the CPU time the
server process spends on it do not (much). Creates its own PostgreSQL database (named per
run, dropped at the end), loads the same workspace as bench/load.py, then calls each
endpoint through the Django test client with ``DEBUG`` off (middleware, session, auth,
queries, templates: the server's work without the network) and reports per endpoint the
queries per request, the process CPU ms (p50) and wall ms (p50).

    python bench/pages.py [--quick] [--traces N] [--labels N] [--runs N]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432)

Last line of output: one JSON object.
"""

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import run_on_scratch_database  # noqa: E402
from bench.load import _trace, seed, set_keys  # noqa: E402


def measure(fn, runs: int, before=None) -> dict:
    """Run ``fn`` once to warm up, then ``runs`` times: queries, CPU and wall ms per call
    (``before`` runs before each call, untimed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fn()
    queries, cpu, wall = [], [], []
    for _ in range(runs):
        if before is not None:
            before()
        with CaptureQueriesContext(connection) as captured:
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        queries.append(len(captured))
    return {
        "queries": max(queries),
        "cpu_ms_p50": round(statistics.median(cpu), 1),
        "wall_ms_p50": round(statistics.median(wall), 1),
    }


def run_as_production(db_name: str, body) -> None:
    """Run ``body`` in this process with production settings on a scratch database."""
    set_keys()
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/10")
    os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/10")
    # The production static files storage serves from a manifest, as the image does.
    os.environ["STATIC_ROOT"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / db_name)
    run_on_scratch_database(db_name, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--show-queries", default="", help="print the SQL of this endpoint")
    parser.add_argument("--profile", default="", help="print where this endpoint's CPU goes")
    parser.add_argument("--only", default="", help="only the endpoints whose name holds this")
    args = parser.parse_args()
    n_traces = args.traces or (5_000 if args.quick else 20_000)
    n_labels = args.labels or (1_000 if args.quick else 4_000)
    runs = args.runs or (10 if args.quick else 30)
    db_name = f"iofold_bench_pages_{os.getpid()}_{int(time.time())}"
    result: dict = {}

    def body() -> None:
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        ctx = seed(n_traces, n_labels)
        page = Client(HTTP_HOST="127.0.0.1")
        page.cookies["sessionid"] = ctx["sessions"][0]
        api = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {ctx['token']}")
        w = f"/w/{ctx['slug']}"
        review = f"{w}/traces/eval-sets/{ctx['eval_set']}/review/"
        rng = random.Random(5)
        counter = itertools.count()

        def get(client, url, status=200):
            def call():
                response = client.get(url)
                assert response.status_code == status, (url, response.status_code)

            return call

        def label():
            card = page.get(review)
            import re

            found = re.search(r"/review/(\d+)/label/", card.content.decode())
            response = page.post(
                f"{review}{found.group(1)}/label/",
                {"rating": rng.choice(["positive", "negative"])},
                HTTP_HX_REQUEST="true",
            )
            assert response.status_code == 200, response.status_code

        def ingest(n):
            def call():
                start = next(counter) * n
                body = {"traces": [_trace(start + i, "pages") for i in range(n)]}
                response = api.post("/api/v1/traces/", body, content_type="application/json")
                assert response.status_code == 201, response.content[:300]

            return call

        def batch_run():
            ids = rng.sample(ctx["trace_ids"], 50)
            response = api.post(
                f"/api/v1/evals/{ctx['eval']}/run",
                {"trace_ids": ids},
                content_type="application/json",
            )
            assert response.status_code == 202, response.content[:300]

        def other_users():
            """What other users wrote between two matrix views of one server process under
            bench/load.py's mix (5 processes; labels, ingestion and batch runs 10 % of the
            requests each): 5 labels, 5 ingested batches of 100, 5 batch runs' verdicts."""
            from django.utils import timezone

            from evals.models import EvalExecution

            for _ in range(5):
                label()
                ingest(100)()
                ids = rng.sample(ctx["trace_ids"], 50)
                EvalExecution.objects.filter(eval_id=ctx["eval"], trace_id__in=ids).update(
                    passed=rng.random() < 0.5, updated_at=timezone.now()
                )

        # The matrix right after other users' writes (as under load, where every view
        # follows some): the writes are not timed.
        after_writes = {"matrix after writes": other_users}
        cases = {
            "trace list": get(page, f"{w}/traces/"),
            "trace list ?q": get(page, f"{w}/traces/?q=refund"),
            "trace list ?tag": get(page, f"{w}/traces/?tag=billing"),
            "trace detail": get(
                page, f"{w}/traces/{ctx['trace_ids'][len(ctx['trace_ids']) // 2]}/"
            ),
            "review next": get(page, review),
            "review label (card + post)": label,
            "matrix": get(page, f"{w}/evals/sets/{ctx['eval_set']}/matrix/"),
            "matrix after writes": get(page, f"{w}/evals/sets/{ctx['eval_set']}/matrix/"),
            "ingest 100": ingest(100),
            "ingest 1000": ingest(1000),
            "batch run": batch_run,
        }
        if args.show_queries:
            cases[args.show_queries]()
            after_writes.get(args.show_queries, lambda: None)()
            with CaptureQueriesContext(connection) as captured:
                cases[args.show_queries]()
            for q in captured.captured_queries:
                print(q["time"], q["sql"][:400])
        if args.profile:
            import cProfile
            import pstats

            cases[args.profile]()
            profiler = cProfile.Profile(time.process_time)
            before = after_writes.get(args.profile, lambda: None)
            for _ in range(runs):
                before()
                profiler.runcall(cases[args.profile])
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(60)
            stats.sort_stats("tottime").print_stats(30)
            by_area: dict = {}
            for (path, _line, _fn), row in stats.stats.items():
                area = "/".join(path.split("site-packages/")[-1].split("/")[:2])
                by_area[area] = by_area.get(area, 0.0) + row[2] * 1000 / runs
            for area, ms in sorted(by_area.items(), key=lambda kv: -kv[1])[:25]:
                print(f"{ms:8.2f} ms  {area}")
            return
        print(f"{'endpoint':<28} {'queries':>7} {'cpu ms':>8} {'wall ms':>8}")
        for name, fn in cases.items():
            if args.only not in name:
                continue
            row = measure(
                fn, runs if "1000" not in name else max(3, runs // 5), after_writes.get(name)
            )
            result[name] = row
            print(f"{name:<28} {row['queries']:>7} {row['cpu_ms_p50']:>8} {row['wall_ms_p50']:>8}")

    run_as_production(db_name, body)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
