"""Benchmark a pull source's sync: traces per second and peak RSS, against fetch-only.

The fake source runs in its own process, the fetch-only baseline and the sync each in a
fresh process (so each peak RSS is its own), on a PostgreSQL database created and dropped
here. Each baseline makes the sync's own requests over raw HTTP and only parses the JSON
(no SDK models, no normalising): Langfuse's gets the same observation pages, LangSmith's
posts the same runs queries.

The fake OpenAI store's baseline makes the same list and messages requests over raw HTTP.

The sync runs with DEBUG off, as a worker does, and fetches, normalises and prepares
(validates, encodes, hashes) one page ahead on a thread while it writes the current one
(integrations.services.PREFETCH_PAGES); Langfuse's observation pages are read ahead on
a thread of their own while the rows before are grouped into traces. Its process imports
the adapter's SDK before the timer, as a worker has after its first sync, and freezes its
start-up heap out of the garbage collector's reach first, as a worker does when it starts
(iofold.lib.heap). The CPU seconds it reports count all its threads and vary less than
wall time on a shared machine, as do those of the database's PostgreSQL backends during
the sync (reported too), with the SQL statements the sync sent (commits aside). The ratio
is only meaningful on a quiet machine: the fetch-only loop is mostly waiting on the fake,
the sync mostly CPU, so a loaded machine slows the sync less than it slows the fetch and
the ratio rises.
A 1,000-trace run lasts well under a second, so one run of each side says little: each
side runs ``--repeat`` times (3), fetch-only and sync in turns, each sync on a fresh copy
of a database migrated once (BENCH_DB_PREFIX names them); the figures are the medians,
the ratio the median of each pair's, with the lowest and highest beside them.

Run: .venv/bin/python bench/sync.py [--source langfuse|langsmith|openai] [--quick] [--traces N]
     [--observations 5] [--repeat 3]
     BENCH_PROFILE=/tmp/sync.prof … writes a cProfile of the sync alone.
     BENCH_CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no --trace-children=yes \
       --trace-children-skip-by-arg=serve,fetch,migrate,callgrind_control \
       --callgrind-out-file=/tmp/sync.cg.%p .venv/bin/python bench/sync.py --quick
     counts the instructions of the sync alone, all its threads (callgrind_annotate reads
     the sync child's file), whatever the machine's load.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = "iofold_bench_sync"
SPACING = timedelta(seconds=10)
PUBLIC_KEY, SECRET_KEY = "pk-lf-bench", "sk-lf-bench"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """This process's CPU time so far (all threads): steadier than wall time on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve_langsmith(traces: int, port_file: str) -> None:
    """Child: serve a fake LangSmith (four runs a trace) whose newest trace is two hours old."""
    from tests.fakes.langsmith_server import FakeLangSmith

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    fake = FakeLangSmith(traces=traces, base_time=base, spacing=SPACING)
    oldest = base - SPACING * traces
    Path(port_file).write_text(f"{fake.url} {oldest.isoformat()}")
    fake._server.serve_forever()


def fetch_only_langsmith(url: str, base: str, traces: int) -> dict:
    """Child: post the sync's runs queries over raw HTTP, parse the JSON, build nothing."""
    import httpx

    from integrations.adapters.base import format_time
    from integrations.adapters.langsmith.adapter import (
        CHILD_PAGE_SIZE,
        PAGE_SIZE,
        SELECTS,
        TRACES_PER_RUNS_QUERY,
        trace_filter,
    )
    from tests.fakes.langsmith_server import API_KEY, PROJECT_ID

    client = httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=60)
    low = (datetime.fromisoformat(base) - timedelta(minutes=1)).isoformat()
    # The sync's scan of roots is bounded above too (its start): the same query here.
    high = format_time(datetime.now(UTC))
    started = time.perf_counter()
    rows, cursor, pages = 0, None, 0
    while True:
        body = {"project_ids": [PROJECT_ID], "is_root": True, "min_start_time": low,
                "max_start_time": high, "page_size": PAGE_SIZE, "selects": SELECTS,
                "cursor": cursor}  # fmt: skip
        page = client.post("/api/v2/runs/query", json=body).json()
        roots = page["items"]
        for start in range(0, len(roots), TRACES_PER_RUNS_QUERY):
            chunk = roots[start : start + TRACES_PER_RUNS_QUERY]
            of_traces = trace_filter([r["id"] for r in chunk])
            child_cursor = None
            while True:
                children = client.post("/api/v2/runs/query", json={
                    "project_ids": [PROJECT_ID], "is_root": False, "min_start_time": low,
                    "filter": of_traces, "page_size": CHILD_PAGE_SIZE,
                    "selects": SELECTS, "cursor": child_cursor}).json()  # fmt: skip
                rows += len(children["items"])
                child_cursor = children["next_cursor"]
                if not child_cursor:
                    break
        rows += len(roots)
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "pages": pages, "traces_per_second": traces / seconds,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def serve_openai(traces: int, port_file: str) -> None:
    """Child: serve a fake OpenAI store (two messages a completion), newest two hours old."""
    from tests.fakes.openai_store_server import FakeOpenAIStore

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    fake = FakeOpenAIStore()
    for i in range(traces):
        created = base - SPACING * i
        fake.add(f"chatcmpl-{i:06d}", created=int(created.timestamp()),
                 history=[{"role": "system", "content": "Be brief."}])  # fmt: skip
    oldest = base - SPACING * traces
    Path(port_file).write_text(f"{fake.base_url} {oldest.isoformat()}")
    fake._server.serve_forever()


def fetch_only_openai(url: str, base: str, traces: int) -> dict:
    """Child: make the sync's list and messages requests over raw HTTP, parse the JSON only."""
    import httpx

    from integrations.adapters.openai import PAGE_LIMIT
    from tests.fakes.openai_store_server import API_KEY

    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                          timeout=60)  # fmt: skip
    floor = int((datetime.fromisoformat(base) - timedelta(minutes=1)).timestamp())
    started = time.perf_counter()
    rows, after, pages, done = 0, None, 0, False
    while not done:
        query = {"limit": PAGE_LIMIT, "order": "desc", **({"after": after} if after else {})}
        page = client.get("/chat/completions", params=query).json()
        pages += 1
        for completion in page["data"]:
            if completion["created"] < floor:
                done = True
                break
            after = completion["id"]
            messages = client.get(f"/chat/completions/{after}/messages",
                                  params={"limit": 100, "order": "asc"}).json()  # fmt: skip
            rows += 1 + len(messages["data"])
        done = done or not page["data"] or not page["has_more"]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "pages": pages, "traces_per_second": traces / seconds,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def serve(traces: int, observations: int, port_file: str) -> None:
    """Child: serve a fake Langfuse whose newest trace is two hours old."""
    from tests.fakes.langfuse_server import FakeLangfuse

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2) - SPACING * traces
    fake = FakeLangfuse(
        traces=traces,
        observations=observations,
        spacing=SPACING,
        base_time=base,
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
    )
    Path(port_file).write_text(f"{fake.url} {base.isoformat()}")
    fake._server.serve_forever()


def fetch_only(url: str, base: str, traces: int) -> dict:
    """Child: get the sync's observation pages over raw HTTP, parse the JSON, build nothing."""
    import httpx

    from integrations.adapters.base import format_time
    from integrations.adapters.langfuse import FIELDS, PAGE_LIMIT

    client = httpx.Client(base_url=url, auth=(PUBLIC_KEY, SECRET_KEY), timeout=60)
    lower = format_time(datetime.fromisoformat(base) - timedelta(minutes=1))
    upper = format_time(datetime.now(UTC))
    started = time.perf_counter()
    rows, cursor, pages = 0, None, 0
    while True:
        params = {"fields": FIELDS, "limit": PAGE_LIMIT, "fromStartTime": lower,
                  "toStartTime": upper, **({"cursor": cursor} if cursor else {})}  # fmt: skip
        page = client.get("/api/public/v2/observations", params=params).json()
        rows += len(page["data"])
        pages += 1
        cursor = (page.get("meta") or {}).get("cursor")
        if not cursor or not page["data"]:
            break
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "pages": pages, "traces_per_second": traces / seconds,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def sync(url: str, base: str, traces: int, source: str = "langfuse") -> dict:
    """Child: run one full sync into PostgreSQL through the service."""
    import django

    django.setup()
    from django.conf import settings as django_settings

    # As a worker runs: DEBUG off, so no query log grows with every page.
    django_settings.DEBUG = False
    from integrations import services
    from integrations.models import SyncRun
    from iofold.lib.heap import freeze_startup_heap
    from traces.models import Trace
    from workspaces.models import Workspace

    # As a worker does once it has started (iofold.celery), before its first sync.
    freeze_startup_heap()
    workspace = Workspace.objects.create(name="Bench", slug=f"bench-{os.getpid()}")
    if source == "langsmith":
        from tests.fakes.langsmith_server import API_KEY

        settings = {"kind": "langsmith", "secret_key": API_KEY,
                    "options": {"project": "default"}}  # fmt: skip
    elif source == "openai":
        from tests.fakes.openai_store_server import API_KEY

        settings = {"kind": "openai", "public_key": "", "secret_key": API_KEY}
    else:
        settings = {"public_key": PUBLIC_KEY, "secret_key": SECRET_KEY}
    integration = services.create_integration(
        workspace=workspace,
        name="bench",
        host=url,
        since_date=datetime.fromisoformat(base) - timedelta(minutes=1),
        **settings,
    )
    run = services.start_sync(integration=integration)
    # A worker imports an adapter's SDK and builds its TLS context once, at its first sync
    # of that kind (OpenAI's SDK alone takes over a second of CPU to import): not part of
    # a sync's throughput, so paid before the timer, as the baseline imports httpx first.
    warm = services.get_adapter(integration)
    getattr(warm, "client", None)
    del warm
    from bench.load import cpu_seconds as busy_seconds

    database = django_settings.DATABASES["default"]["NAME"]
    from django.db import connection

    statements = 0

    def count(execute, sql, params, many, context):
        nonlocal statements
        statements += 1
        return execute(sql, params, many, context)

    postgres_started = busy_seconds(db_name=database)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    # The sync's own statements (this thread's connection: the heartbeat has its own).
    with connection.execute_wrapper(count):
        if profile := os.environ.get("BENCH_PROFILE"):  # a cProfile dump of the sync alone
            import cProfile

            with cProfile.Profile() as profiler:
                run = services.run_sync(run_id=run.pk)
            profiler.dump_stats(profile)
        elif os.environ.get("BENCH_CALLGRIND"):  # count the sync's instructions alone
            _callgrind("on")
            run = services.run_sync(run_id=run.pk)
            _callgrind("off")
        else:
            run = services.run_sync(run_id=run.pk)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    postgres_cpu = busy_seconds(db_name=database) - postgres_started
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    stored = Trace.objects.for_workspace(workspace).count()
    assert stored == traces, f"stored {stored} of {traces}"
    return {"seconds": seconds, "cpu_seconds": cpu, "postgres_cpu_seconds": postgres_cpu,
            "created": run.created_count, "sql_statements": statements,
            "pages": run.pages, "traces_per_second": traces / seconds,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _callgrind(state: str) -> None:
    """Switch callgrind's counting on or off in this process (BENCH_CALLGRIND, see above)."""
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                   capture_output=True, env={**os.environ, "VALGRIND_OPTS": ""})  # fmt: skip


def _child(phase: str, env: dict, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args],
        env=env, cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"{phase} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", choices=["langfuse", "langsmith", "openai"], default="langfuse")
    parser.add_argument("--quick", action="store_true", help="1,000 traces instead of 10,000")
    parser.add_argument("--traces", type=int)
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each side; medians are reported"
    )
    parser.add_argument("--phase", choices=["serve", "fetch", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    traces = args.traces or (1000 if args.quick else 10_000)

    langsmith = args.source == "langsmith"
    openai = args.source == "openai"
    if args.phase == "serve" and openai:
        return serve_openai(traces, args.port_file)
    if args.phase == "fetch" and openai:
        return print(json.dumps(fetch_only_openai(args.url, args.base, traces)))
    if args.phase == "serve" and langsmith:
        return serve_langsmith(traces, args.port_file)
    if args.phase == "serve":
        return serve(traces, args.observations, args.port_file)
    if args.phase == "fetch" and langsmith:
        return print(json.dumps(fetch_only_langsmith(args.url, args.base, traces)))
    if args.phase == "fetch":
        return print(json.dumps(fetch_only(args.url, args.base, traces)))
    if args.phase == "sync":
        return print(json.dumps(sync(args.url, args.base, traces, args.source)))
    if langsmith:
        args.observations = 4  # the fake LangSmith's runs per trace: root, llm, tool, retriever
    if openai:
        args.observations = 1  # one stored completion a trace (plus its messages request)
    repeats = max(1, args.repeat)
    prefix = os.environ.get("BENCH_DB_PREFIX", DB_NAME)
    template = f"{prefix}_{args.source}_{os.getpid()}"
    # Each sync writes into a database of its own, a copy of one migrated once: every run
    # starts from the same empty tables.
    db_names = [f"{template}_{run}" for run in range(repeats)]

    import psycopg

    admin = psycopg.connect(ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True)
    for name in [template, *db_names]:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {template}")

    def env_for(name: str) -> dict:
        return {**os.environ, "DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + f"/{name}",
                "DJANGO_SETTINGS_MODULE": "iofold.settings", "LOG_LEVEL": "WARNING"}  # fmt: skip

    env = env_for(template)
    port_file = ROOT / "var" / f"bench-sync-{os.getpid()}.url"
    server = None
    fetches, syncs = [], []
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        for name in db_names:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        server = subprocess.Popen(
            [sys.executable, __file__, "--phase", "serve", f"--traces={traces}",
             f"--source={args.source}",
             f"--observations={args.observations}", f"--port-file={port_file}"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.1)
        url, base = port_file.read_text().split()
        # Untimed pass first: the fake builds its index on the first request.
        child_args = (f"--url={url}", f"--base={base}", f"--traces={traces}",
                      f"--source={args.source}")  # fmt: skip
        _child("fetch", env, *child_args)
        # Fetch-only and sync in turns, each sync on its own fresh database: a change in the
        # machine's load touches both sides of a pair alike.
        for name in db_names:
            fetches.append(_child("fetch", env, *child_args))
            syncs.append(_child("sync", env_for(name), *child_args))
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        port_file.unlink(missing_ok=True)
        for name in [*db_names, template]:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    # Medians of the runs; the ratio is the median of each pair's (fetch, then sync).
    pairs = zip(fetches, syncs, strict=True)
    ratios = [s["traces_per_second"] / f["traces_per_second"] for f, s in pairs]
    fetched = {key: median([f[key] for f in fetches]) for key in fetches[0]}
    synced = {key: median([s[key] for s in syncs]) for key in syncs[0]}
    ratio = median(ratios)
    print(
        f"traces: {traces} x {args.observations} observations ({fetched['rows']:.0f} rows, "
        f"{fetched['pages']:.0f} API pages); medians of {repeats} runs of each side "
        f"[lowest-highest]"
    )
    print(
        f"raw-HTTP fetch only: {fetched['seconds']:.2f} s {spread(fetches, 'seconds')}, "
        f"{fetched['traces_per_second']:.0f} traces/s, peak RSS {fetched['peak_rss_mb']:.0f} MB"
    )
    print(
        f"sync to PostgreSQL: {synced['seconds']:.2f} s {spread(syncs, 'seconds')}, "
        f"{synced['traces_per_second']:.0f} traces/s, peak RSS {synced['peak_rss_mb']:.0f} MB, "
        f"{synced['pages']:.0f} sync pages, {synced['cpu_seconds']:.2f} s of CPU "
        f"{spread(syncs, 'cpu_seconds')} (PostgreSQL's backends: "
        f"{synced['postgres_cpu_seconds']:.2f} s), {synced['sql_statements']:.0f} SQL statements"
    )
    print(
        f"sync / fetch-only throughput: {ratio:.2f} [{min(ratios):.2f}-{max(ratios):.2f}] "
        f"(goal >= 0.5); peak RSS goal < 300 MB"
    )
    flags = f"--source {args.source} " + ("--quick " if args.quick else "")
    flags += f"--repeat {repeats}"
    print(f"reproduce: .venv/bin/python bench/sync.py {flags}")
    print(json.dumps({
        "source": args.source,
        "traces": traces,
        "observations_per_trace": args.observations,
        "sync_traces_per_second": round(synced["traces_per_second"], 1),
        "fetch_only_traces_per_second": round(fetched["traces_per_second"], 1),
        "throughput_ratio": round(ratio, 3),
        "sync_peak_rss_mb": round(synced["peak_rss_mb"], 1),
        "fetch_peak_rss_mb": round(fetched["peak_rss_mb"], 1),
        "sync_seconds": round(synced["seconds"], 2),
        "sync_cpu_seconds": round(synced["cpu_seconds"], 2),
        "postgres_cpu_seconds": round(synced["postgres_cpu_seconds"], 2),
        "sync_sql_statements": synced["sql_statements"],
        "repeats": repeats,
        "throughput_ratio_min": round(min(ratios), 3),
        "throughput_ratio_max": round(max(ratios), 3),
        "sync_seconds_min": round(min(s["seconds"] for s in syncs), 2),
        "sync_seconds_max": round(max(s["seconds"] for s in syncs), 2),
        "fetch_seconds": round(fetched["seconds"], 2),
        "fetch_seconds_min": round(min(f["seconds"] for f in fetches), 2),
        "fetch_seconds_max": round(max(f["seconds"] for f in fetches), 2),
        "sync_cpu_seconds_min": round(min(s["cpu_seconds"] for s in syncs), 2),
        "sync_cpu_seconds_max": round(max(s["cpu_seconds"] for s in syncs), 2),
    }))  # fmt: skip


def spread(runs: list[dict], key: str) -> str:
    """The lowest and highest of ``key`` over the runs, as ``[low-high]``."""
    values = [run[key] for run in runs]
    return f"[{min(values):.2f}-{max(values):.2f}]"


if __name__ == "__main__":
    main()
