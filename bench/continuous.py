"""Benchmark continuous evaluation through real Celery workers, per stage, with 1 and 2 workers.

New traces are synced from a fake Langfuse (its own process) into a PostgreSQL database
created here for this run and dropped at the end. Then, for 1 and then 2 Celery worker
processes (Redis as the broker), the eval is activated and the stored traces are handed to
continuous evaluation as an ingestion would: the task starts the automatic run, which is
split into chunks the workers share (read from PostgreSQL, sandbox, verdicts written),
and the last chunk pushes the verdicts back to the fake as scores. Stages:

- sync: the fake's pages into stored traces (this process);
- judged: from the hand-over to the broker until every verdict is written;
- pushed: until every score has arrived at the fake;
- chunk busy: the sum over chunks of claim-to-finish time (the workers' own time);
- CPU: the worker processes' own and their jails' over the judged stage.

Inside the workers (their logs): the start task (which evals, which traces, the run and its
chunks), and per chunk the time reading traces, in the sandbox, writing verdicts (each in a
thread of its own, overlapping), and waiting for the sandbox and the writer (what the
overlap did not hide); and what no overlap can hide: the time before the first batch
enters the sandbox (fill), the sandbox idle between batches (gaps), and the writes left
once the last batch is judged (drain).
A timeline per round says when the run was created and when each chunk started and ended
(seconds after the hand-over) and which worker took it: the gaps are where no sandbox ran.

The reference is the sandbox alone on the same traces in the same calls (run_json over
text already in memory, one process, each call after the last, each waiting for its own
jail to start): what one worker would take if every read, write and message were free.
A worker starts each batch's jail while the batch before it runs (``run_json(ahead=True)``),
which this reference does not, so a round can come in under it. Each round's ratio is to
the mean of two passes taken around it (workers started and idle, before the hand-over
and after the scores are pushed): on a shared machine a pass swings by half within
minutes, and one reference for all rounds put some below 1. Goal: judged with one worker
≤ 1.5 × sandbox only (the median of the rounds' ratios). Completion is polled on the
run's own counters (one row), not by counting verdicts, so the bench's polling costs the
workers next to nothing.

Run: .venv/bin/python bench/continuous.py [--quick] [--traces N] [--profile sync]
[--compare PATH] [--repeat N]
(REDIS_URL defaults to redis://127.0.0.1:6379/6: the bench flushes that database;
BENCH_DB_PREFIX names its PostgreSQL database, iofold_bench_continuous by default.)

``--compare PATH``: a checkout of other code (``git worktree add /tmp/old main``) whose
workers judge the same stored traces in rounds alternated with this checkout's, ``--repeat``
times: old and new side by side at the same moment of a shared machine, one sync for all.
Each code's rounds run on its own schema: where the checkout to compare stops at an earlier
migration (it must be an older one of this checkout's), the database is migrated back for
its rounds and forward again for this code's.
"""

import argparse
import json
import os
import re
import statistics
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
# BENCH_DB_PREFIX: a prefix of one's own (a shared server's naming rules).
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "iofold_bench_continuous")
DB_NAME = f"{DB_PREFIX}_{os.getpid()}_{int(time.time())}"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
GOAL_RATIO = 1.5
SPACING = timedelta(seconds=10)
PUBLIC_KEY, SECRET_KEY = "pk-lf-bench", "sk-lf-bench"
EVAL_CODE = """def eval_fn(trace):
    failed = [s["name"] for s in trace["steps"] if s.get("error")]
    if failed:
        return False, "a step failed: " + failed[0]
    return True, "no step failed"
"""


def serve(traces: int, port_file: str) -> None:
    """Child: serve a fake Langfuse whose newest trace is two hours old."""
    from tests.fakes.langfuse_server import FakeLangfuse

    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2) - SPACING * traces
    fake = FakeLangfuse(
        traces=traces,
        observations=5,
        spacing=SPACING,
        base_time=base,
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
    )
    fake._ensure_index()
    Path(port_file).write_text(f"{fake.url} {base.isoformat()}")
    fake._server.serve_forever()


def _cpu_seconds(pid: int, *, children: bool = False) -> float:
    """Return the user+system CPU seconds a process has used so far (Linux /proc).

    With ``children``: its children's that it waited for instead (a worker's jails).
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def _workers_cpu(procs: list[subprocess.Popen]) -> tuple[float, float]:
    """Return the CPU seconds the worker processes and their jails have used so far."""
    return (
        sum(_cpu_seconds(proc.pid) for proc in procs),
        sum(_cpu_seconds(proc.pid, children=True) for proc in procs),
    )


class _Stage:
    """Time one stage; profile it when it is the one asked for."""

    def __init__(self, name: str, profile: str | None) -> None:
        self.name, self.profiler = name, None
        if profile == name:
            import cProfile

            self.profiler = cProfile.Profile()

    def __enter__(self) -> "_Stage":
        self.started, self.cpu_started = time.perf_counter(), time.process_time()
        if self.profiler:
            self.profiler.enable()
        return self

    def __exit__(self, *exc) -> None:
        if self.profiler:
            self.profiler.disable()
        self.seconds = time.perf_counter() - self.started
        # This process's own CPU (not PostgreSQL's, the jails' or the fake's): steadier
        # than wall time on a shared machine.
        self.cpu = time.process_time() - self.cpu_started
        if self.profiler:
            import pstats

            out = ROOT / "var" / f"bench-continuous-{self.name}.prof"
            self.profiler.dump_stats(out)
            stats = pstats.Stats(self.profiler, stream=sys.stderr)
            stats.sort_stats("cumulative").print_stats(40)
            stats.sort_stats("tottime").print_stats(25)
            print(f"profile written to {out}", file=sys.stderr)


def _start_worker(log: Path, root: Path = ROOT) -> subprocess.Popen:
    from django.conf import settings

    # A checkout to compare keeps its own development keys in its var/: the workers share
    # this process's, which encrypted the integration's secrets they decrypt to push scores.
    keys = {"IOFOLD_ENCRYPTION_KEYS": ",".join(settings.IOFOLD_ENCRYPTION_KEYS),
            "SECRET_KEY": settings.SECRET_KEY}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "iofold", "worker", "--pool=solo",
         "--queues=default,execute", "--loglevel=INFO", "--without-gossip",
         "--without-mingle"],
        cwd=root, env={**os.environ, **keys}, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while " ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"Celery worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc


def _wait(predicate, what: str, every: float, timeout: float = 1800) -> float:
    """Poll the database until ``predicate()``; return the monotonic time it came true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(every)
    return time.monotonic()


# fill, gaps and drain: only in the lines of code that logs them (not a checkout to compare).
STAGE_LINE = re.compile(
    r"eval run chunk done .*?traces=(\d+) batches=(\d+) total_ms=(\d+) "
    r"read_ms=(\d+) sandbox_ms=(\d+) write_ms=(\d+) waited_ms=(\d+)"
    r"(?: fill_ms=(\d+) gaps_ms=(\d+) drain_ms=(\d+))?"
)
START_LINE = re.compile(r"run_automatic_evals_task\[[^\]]+\] succeeded in ([0-9.]+)s")


def worker_stages(logs: list[Path]) -> dict:
    """Sum the per-chunk stage lines and the start task's time from the workers' logs."""
    keys = ("traces", "batches", "total", "read", "sandbox", "write", "waited", "fill", "gaps",
            "drain")  # fmt: skip
    sums = dict.fromkeys(keys, 0.0)
    start = 0.0
    for log in logs:
        text = log.read_text()
        for match in STAGE_LINE.finditer(text):
            for key, value in zip(keys, match.groups(), strict=True):
                if value is not None:
                    sums[key] += float(value) / (1 if key in ("traces", "batches") else 1000)
        start += sum(float(m) for m in START_LINE.findall(text))
    counts = {f"chunk_{k}": sums.pop(k) for k in ("traces", "batches")}
    return {"start_task_s": start, **counts, **{f"chunk_{k}_s": v for k, v in sums.items()}}


def through_celery(
    workspace,
    eval,
    trace_ids: list[int],
    workers: int,
    sandbox_pass,
    root: Path = ROOT,
    label: str = "new",
) -> dict:
    """Judge the stored traces on ``workers`` real Celery workers of the code at ``root``.

    ``sandbox_pass()`` (the reference) runs once with the workers started and idle, before
    the hand-over, and once after the scores are pushed: the round's ratio is to the mean of
    the two, measured in the same minute as the round.
    """
    from celery import current_app
    from django.db.models import F, Sum
    from django.utils import timezone

    from evals.execution.continuous import queue_automatic_runs
    from evals.models import Eval, EvalExecution, EvalRun, EvalRunChunk
    from evals.queue import START_AUTOMATIC_RUNS
    from iofold.lib.tasks import registered_task

    EvalExecution.objects.filter(eval=eval).delete()
    EvalRun.objects.filter(eval=eval).delete()
    logs = ROOT / "var" / f"bench-continuous-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    round_no = len(list(logs.glob("*-0.log")))
    log_files = [logs / f"round-{round_no}-{label}-{workers}-{n}.log" for n in range(workers)]
    procs = [_start_worker(log, root) for log in log_files]
    executions = EvalExecution.objects.filter(eval=eval)
    runs = EvalRun.objects.filter(eval=eval)
    try:
        Eval.objects.filter(pk=eval.pk).update(
            status=Eval.Status.ACTIVE, activated_at=timezone.now()
        )
        # A process that ingests (a sync worker; a web worker after its first request) has
        # imported the tasks and holds a broker connection: this one too, before the clock
        # starts (a cold import here took 3 to 7 s, more than the judging it timed).
        registered_task(START_AUTOMATIC_RUNS)
        with current_app.producer_or_acquire() as producer:
            producer.connection.ensure_connection()
        sandbox_before = sandbox_pass()
        cpu_before = _workers_cpu(procs)
        started, handed_over = time.monotonic(), timezone.now()
        # What iofold.pipeline does when an ingestion commits: one message to the broker.
        queue_automatic_runs(workspace_id=workspace.pk, trace_ids=trace_ids)
        # The run's `done` moves in the transaction that writes each batch's verdicts.
        judged = _wait(
            lambda: (runs.aggregate(n=Sum("done"))["n"] or 0) >= len(trace_ids),
            "the verdicts",
            # Often: the poll's delay adds to what it measures, and it reads one row.
            every=0.01,
        )
        # The judged stage's: the start task and the chunks (not the push that follows).
        worker_cpu, jails_cpu = (
            after - before for after, before in zip(_workers_cpu(procs), cpu_before, strict=True)
        )
        pushed = _wait(
            lambda: executions.filter(score_pushed_at__isnull=False).count() >= len(trace_ids),
            "the scores",
            every=0.05,  # a count over the verdicts
        )
        sandbox_after = sandbox_pass()
    finally:
        Eval.objects.filter(pk=eval.pk).update(status=Eval.Status.DRAFT)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    chunks = EvalRunChunk.objects.filter(run__eval=eval)
    busy = chunks.aggregate(t=Sum(F("finished_at") - F("started_at")))["t"]
    owners = set(chunks.values_list("owner", flat=True))
    # When each step began and ended, in seconds after the hand-over (one clock: this machine's).
    run_row = runs.get()
    timeline = [("run created", run_row.created_at)] + [
        (f"chunk {c.index} pid {c.owner.split(':')[1]}", c.started_at, c.finished_at)
        for c in chunks.order_by("started_at")
    ]
    timeline = [
        (name, *[round((t - handed_over).total_seconds(), 3) for t in times])
        for name, *times in timeline
    ]
    assert executions.count() == len(trace_ids)
    if chunks.exists():
        assert sum(chunks.values_list("judged", flat=True)) == len(trace_ids), "judged twice"
    return {
        "code": label,
        "workers": workers,
        "load": os.getloadavg()[0],
        "sandbox_only_s": (sandbox_before + sandbox_after) / 2,
        "judged_s": judged - started,
        "pushed_s": pushed - started,
        "chunks": chunks.count(),
        "chunk_busy_s": busy.total_seconds() if busy else 0.0,
        "workers_used": len(owners),
        "worker_cpu_s": worker_cpu,
        "jails_cpu_s": jails_cpu,
        "timeline": timeline,
        **worker_stages(log_files),
    }


def last_migrations(root: Path) -> dict[str, str]:
    """Each app's last migration in the checkout at ``root``."""
    last: dict[str, str] = {}
    for path in root.glob("*/migrations/[0-9][0-9][0-9][0-9]_*.py"):
        app = path.parent.parent.name
        last[app] = max(last.get(app, ""), path.stem)
    return last


def use_schema_of(root: Path) -> None:
    """Migrate the bench's database to the schema of the code at ``root``: a checkout to
    compare may stop at earlier migrations of this checkout's (its rounds then run on the
    tables as they were; the old code reads and writes the same columns either way)."""
    from django.core.management import call_command

    if root == ROOT:
        call_command("migrate", verbosity=0)
        return
    mine = last_migrations(ROOT)
    for app, name in last_migrations(root).items():
        if mine.get(app) != name:
            call_command("migrate", app, name, verbosity=0)


def pipeline(
    url: str,
    base: str,
    traces: int,
    server_pid: int,
    profile: str | None,
    compare: str | None = None,
    repeat: int = 1,
) -> dict:
    """Child: sync, then judge and push through 1 and 2 Celery workers; time each stage."""
    import django

    django.setup()
    from django.conf import settings

    import sandbox
    from evals.execution.runs import EXECUTE_CHUNK, trace_json
    from evals.models import Eval
    from evals.sandboxing import sandbox_limits
    from integrations import services
    from traces.models import EvalSet, Trace
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
    eval_set = EvalSet.objects.create(
        workspace=workspace,
        name="No failed steps",
        criteria="No step fails.",
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={"source": "langfuse"},
        score_to_langfuse=True,
    )
    # A draft while syncing: the sync stage stores traces only; judging is timed apart.
    eval = Eval.objects.create(workspace=workspace, eval_set=eval_set, version=1, code=EVAL_CODE)
    with _Stage("sync", profile) as sync:
        run = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert run.status == "succeeded", run.error
    trace_ids = list(
        Trace.objects.for_workspace(workspace)
        .order_by("timestamp", "id")
        .values_list("id", flat=True)
    )
    assert len(trace_ids) == traces, len(trace_ids)
    # Reference: the sandbox alone, in the very calls the chunks make, over JSON text
    # already in memory: what is left when every read, write and message is free.
    size = settings.IOFOLD_EVAL_CHUNK_TRACES
    batch = min(size, EXECUTE_CHUNK)
    calls = [
        trace_json(workspace_id=workspace.pk, trace_ids=chunk[i : i + batch])[1]
        for chunk in (trace_ids[c : c + size] for c in range(0, len(trace_ids), size))
        for i in range(0, len(chunk), batch)
    ]

    def sandbox_pass() -> float:
        started = time.perf_counter()
        for texts in calls:
            sandbox.run_json(EVAL_CODE, texts, sandbox_limits())
        return time.perf_counter() - started

    sandbox.prepare()  # the process's first run checks the jail: not part of any pass
    codes = [("new", ROOT)] + ([("old", Path(compare))] if compare else [])
    rounds = []
    for r in range(repeat):
        # Alternated: old first in odd repeats, so neither always runs after the other.
        for label, root in codes if r % 2 == 0 else codes[::-1]:
            if compare:
                use_schema_of(root)
            rounds += [
                through_celery(workspace, eval, trace_ids, n, sandbox_pass, root, label)
                for n in (1, 2)
            ]

    # The median of three passes over the whole run: on a shared machine one pass alone
    # swings by half (each round's own ratio uses the passes next to it).
    sandbox_only = statistics.median(sandbox_pass() for _ in range(3))
    return {
        "sync_s": sync.seconds,
        "sync_cpu_s": sync.cpu,
        "rounds": rounds,
        "sandbox_only_s": sandbox_only,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 traces instead of 10,000")
    parser.add_argument("--traces", type=int)
    parser.add_argument("--profile", choices=["sync"])
    parser.add_argument("--compare", help="a checkout of other code to alternate with")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of each code")
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["serve", "run"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    traces = args.traces or (1000 if args.quick else 10_000)

    if args.phase == "serve":
        return serve(traces, args.port_file)
    if args.phase == "run":
        result = pipeline(
            args.url, args.base, traces, args.server_pid, args.profile, args.compare, args.repeat
        )
        return print(json.dumps(result))

    import psycopg

    admin = psycopg.connect(ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {DB_NAME}")
    db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "iofold.settings",
           "LOG_LEVEL": "WARNING", "CELERY_BROKER_URL": REDIS_URL,
           "IOFOLD_ALLOW_PRIVATE_HOSTS": "true",
           # --quick's 1,000 traces in four chunks, so two workers have something to share;
           # otherwise the setting's default (5,000: two chunks of 10,000 traces).
           "IOFOLD_EVAL_CHUNK_TRACES": os.environ.get(
               "IOFOLD_EVAL_CHUNK_TRACES", "250" if args.quick else "5000")}  # fmt: skip
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()  # this bench's own database: no stale tasks
    port_file = ROOT / "var" / f"bench-continuous-{os.getpid()}.url"
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True
        )
        server = subprocess.Popen(
            [sys.executable, __file__, "--phase", "serve", f"--traces={traces}",
             f"--port-file={port_file}"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.1)
        url, base = port_file.read_text().split()
        out = subprocess.run(
            [sys.executable, __file__, "--phase", "run", f"--url={url}", f"--base={base}",
             f"--traces={traces}", f"--server-pid={server.pid}", f"--repeat={args.repeat}",
             *([f"--profile={args.profile}"] if args.profile else []),
             *([f"--compare={Path(args.compare).resolve()}"] if args.compare else [])],
            env=env, cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if args.profile:
            sys.stderr.write(out.stderr)
        if out.returncode != 0:
            sys.exit(f"pipeline failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        port_file.unlink(missing_ok=True)
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.close()

    r = result
    ref = r["sandbox_only_s"]
    print(f"traces: {traces} new, 5 observations each; chunks of {env['IOFOLD_EVAL_CHUNK_TRACES']}")
    print(f"{'sync':>16}: {r['sync_s']:7.2f} s  {traces / r['sync_s']:8.0f} traces/s  "
          f"(process CPU {r['sync_cpu_s']:.2f} s)")  # fmt: skip
    print(f"{'sandbox only':>16}: {ref:7.2f} s  {traces / ref:8.0f} traces/s "
          "(one process, the chunks' calls; median of three passes after the rounds; each "
          "round's ratio is to the passes just before and after it)")  # fmt: skip
    for row in r["rounds"]:
        n = row["workers"]
        used = row["workers_used"]
        print(f"-- {n} Celery worker{'s' if n > 1 else ''} ({row['code']} code, load "
              f"{row['load']:.1f}): {row['chunks']} chunks, "
              f"taken by {used} worker process{'es' if used > 1 else ''}")  # fmt: skip
        print(f"{'judged':>16}: {row['judged_s']:7.2f} s  {traces / row['judged_s']:8.0f} "
              f"traces/s  = {row['judged_s'] / row['sandbox_only_s']:.2f} × sandbox only "
              f"({row['sandbox_only_s']:.2f} s around this round)")  # fmt: skip
        print(f"{'scores pushed':>16}: {row['pushed_s']:7.2f} s  (end to end after sync: "
              f"{r['sync_s'] + row['pushed_s']:.2f} s)")  # fmt: skip
        print(f"{'chunk busy':>16}: {row['chunk_busy_s']:7.2f} s  summed over chunks")
        print(f"{'in the workers':>16}: start task {row['start_task_s']:.2f} s; chunks "
              f"{row['chunk_total_s']:.2f} s for {row['chunk_traces']:.0f} traces in "
              f"{row['chunk_batches']:.0f} batches: read {row['chunk_read_s']:.2f} + waiting "
              f"{row['chunk_waited_s']:.2f} (+ rest) in the chunk's thread; writer thread "
              f"{row['chunk_write_s']:.2f}; sandbox {row['chunk_sandbox_s']:.2f} s")  # fmt: skip
        print(
            f"{'CPU':>16}: workers {row['worker_cpu_s']:.2f} s, their jails "
            f"{row['jails_cpu_s']:.2f} s (the judged stage)"
        )
        if row["chunk_fill_s"] or row["chunk_drain_s"]:
            print(f"{'not overlapped':>16}: before the first batch entered the sandbox "
                  f"{row['chunk_fill_s']:.2f} s, sandbox idle between batches "
                  f"{row['chunk_gaps_s']:.2f} s, writes after the last batch was judged "
                  f"{row['chunk_drain_s']:.2f} s (summed over chunks)")  # fmt: skip
        print(f"{'timeline':>16}: " + "; ".join(
            f"{name} {'–'.join(f'{t:.2f}' for t in times)}" for name, *times in row["timeline"]
        ))  # fmt: skip
    several = len(r["rounds"]) > 2

    def ratio(row: dict) -> float:
        return row["judged_s"] / row["sandbox_only_s"]

    def median_ratio(code: str, n: int) -> float:
        return statistics.median(
            ratio(row) for row in r["rounds"] if (row["code"], row["workers"]) == (code, n)
        )

    if several:
        print("medians over the rounds (judged; its ratio to the sandbox only around it):")
        for code in dict.fromkeys(row["code"] for row in r["rounds"]):
            for n in (1, 2):
                judged = statistics.median(
                    row["judged_s"]
                    for row in r["rounds"]
                    if (row["code"], row["workers"]) == (code, n)
                )
                print(f"{code:>12} code, {n} worker{'s' if n > 1 else ''}: {judged:5.2f} s "
                      f"({median_ratio(code, n):.2f}×)")  # fmt: skip
    flag = (" --quick" if args.quick else "") + (f" --traces={args.traces}" if args.traces else "")
    flag += f" --compare={args.compare}" if args.compare else ""
    flag += f" --repeat={args.repeat}" if args.repeat > 1 else ""
    print(f"reproduce: .venv/bin/python bench/continuous.py{flag}")
    one = r["rounds"][0]
    print(json.dumps({
        "traces": traces,
        "sync_traces_per_second": round(traces / r["sync_s"], 1),
        "sandbox_only_seconds": round(ref, 2),
        "workers": {
            (f"{row['code']} {row['workers']} #{i // 2}" if several else str(row["workers"])): {
                "judged_seconds": round(row["judged_s"], 2),
                "pushed_seconds": round(row["pushed_s"], 2),
                "end_to_end_seconds": round(r["sync_s"] + row["pushed_s"], 2),
                "sandbox_only_seconds": round(row["sandbox_only_s"], 2),
                "judged_over_sandbox_only": round(ratio(row), 2),
                "worker_cpu_seconds": round(row["worker_cpu_s"], 2),
                "jails_cpu_seconds": round(row["jails_cpu_s"], 2),
                "stages_seconds": {
                    key: round(row[key], 3)
                    for key in ("start_task_s", "chunk_total_s", "chunk_read_s", "chunk_sandbox_s",
                                "chunk_write_s", "chunk_waited_s", "chunk_fill_s", "chunk_gaps_s",
                                "chunk_drain_s")
                },  # fmt: skip
            }
            for i, row in enumerate(r["rounds"])
        },
        "goal_met": median_ratio(one["code"], 1) <= GOAL_RATIO,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
