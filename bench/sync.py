"""Benchmark the Langfuse sync: traces per second and peak RSS, against fetch-only through the SDK.

The fake Langfuse runs in its own process, the SDK-only fetch and the sync each in a fresh
process (so each peak RSS is its own), on a PostgreSQL database created and dropped here.

Run: .venv/bin/python bench/sync.py [--quick] [--traces N] [--observations 5]
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
    """Child: page through the same observation rows with the SDK alone."""
    from langfuse.api import LangfuseAPI

    from integrations.adapters.langfuse import FIELDS, PAGE_LIMIT

    client = LangfuseAPI(base_url=url, username=PUBLIC_KEY, password=SECRET_KEY, timeout=60)
    lower = datetime.fromisoformat(base) - timedelta(minutes=1)
    upper = datetime.now(UTC)
    started = time.perf_counter()
    rows, cursor, pages = 0, None, 0
    while True:
        page = client.observations.get_many(
            fields=FIELDS,
            limit=PAGE_LIMIT,
            cursor=cursor,
            from_start_time=lower,
            to_start_time=upper,
            request_options={"max_retries": 0},
        )
        rows += len(page.data)
        pages += 1
        cursor = page.meta.cursor if page.meta else None
        if not cursor or not page.data:
            break
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "pages": pages, "traces_per_second": traces / seconds,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def sync(url: str, base: str, traces: int) -> dict:
    """Child: run one full sync into PostgreSQL through the service."""
    import django

    django.setup()
    from integrations import services
    from integrations.models import SyncRun
    from traces.models import Trace
    from workspaces.models import Workspace

    workspace = Workspace.objects.create(name="Bench", slug=f"bench-{os.getpid()}")
    integration = services.create_integration(
        workspace=workspace,
        name="bench",
        host=url,
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
        since_date=datetime.fromisoformat(base) - timedelta(minutes=1),
    )
    run = services.start_sync(integration=integration)
    started = time.perf_counter()
    run = services.run_sync(run_id=run.pk)
    seconds = time.perf_counter() - started
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    stored = Trace.objects.for_workspace(workspace).count()
    assert stored == traces, f"stored {stored} of {traces}"
    return {"seconds": seconds, "created": run.created_count, "pages": run.pages,
            "traces_per_second": traces / seconds, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


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
    parser.add_argument("--quick", action="store_true", help="1,000 traces instead of 10,000")
    parser.add_argument("--traces", type=int)
    parser.add_argument("--observations", type=int, default=5)
    parser.add_argument("--phase", choices=["serve", "fetch", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    traces = args.traces or (1000 if args.quick else 10_000)

    if args.phase == "serve":
        return serve(traces, args.observations, args.port_file)
    if args.phase == "fetch":
        return print(json.dumps(fetch_only(args.url, args.base, traces)))
    if args.phase == "sync":
        return print(json.dumps(sync(args.url, args.base, traces)))

    import psycopg

    admin = psycopg.connect(ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
    admin.execute(f"CREATE DATABASE {DB_NAME}")
    db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "iofold.settings",
           "LOG_LEVEL": "WARNING"}  # fmt: skip
    port_file = ROOT / "var" / f"bench-sync-{os.getpid()}.url"
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        server = subprocess.Popen(
            [sys.executable, __file__, "--phase", "serve", f"--traces={traces}",
             f"--observations={args.observations}", f"--port-file={port_file}"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.1)
        url, base = port_file.read_text().split()
        # Untimed pass first: the fake builds its index on the first request.
        _child("fetch", env, f"--url={url}", f"--base={base}", f"--traces={traces}")
        fetched = _child("fetch", env, f"--url={url}", f"--base={base}", f"--traces={traces}")
        synced = _child("sync", env, f"--url={url}", f"--base={base}", f"--traces={traces}")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        port_file.unlink(missing_ok=True)
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.close()

    ratio = synced["traces_per_second"] / fetched["traces_per_second"]
    print(
        f"traces: {traces} x {args.observations} observations ({fetched['rows']} rows, "
        f"{fetched['pages']} API pages)"
    )
    print(
        f"SDK fetch only: {fetched['seconds']:.2f} s, "
        f"{fetched['traces_per_second']:.0f} traces/s, peak RSS {fetched['peak_rss_mb']:.0f} MB"
    )
    print(
        f"sync to PostgreSQL: {synced['seconds']:.2f} s, {synced['traces_per_second']:.0f} "
        f"traces/s, peak RSS {synced['peak_rss_mb']:.0f} MB, {synced['pages']} sync pages"
    )
    print(f"sync / fetch-only throughput: {ratio:.2f} (goal >= 0.5); peak RSS goal < 300 MB")
    print(f"reproduce: .venv/bin/python bench/sync.py {'--quick' if args.quick else ''}".rstrip())
    print(json.dumps({
        "traces": traces,
        "observations_per_trace": args.observations,
        "sync_traces_per_second": round(synced["traces_per_second"], 1),
        "fetch_only_traces_per_second": round(fetched["traces_per_second"], 1),
        "throughput_ratio": round(ratio, 3),
        "sync_peak_rss_mb": round(synced["peak_rss_mb"], 1),
        "fetch_peak_rss_mb": round(fetched["peak_rss_mb"], 1),
        "sync_seconds": round(synced["seconds"], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
