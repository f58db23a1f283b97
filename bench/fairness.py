"""Fair sharing of the execute workers: small runs of other workspaces behind a backfill.

Three workspaces on a PostgreSQL database created here for this run (dropped at the end),
Redis as the broker, real Celery workers (``--workers``, one by default). In each round, in
one commit, in this order:

- workspace A queues a backfill: an API run over ``--traces`` traces (split into chunks of
  ``IOFOLD_EVAL_CHUNK_TRACES``);
- workspace B queues a manual run ("Test again") over 200 traces: a person waits for it;
- workspace C queues an API run over 200 traces: background, like continuous scoring.

Measured from the commit to each run's ``finished_at`` (the rows, not polling): seconds
until B's run, C's run and A's backfill finished. The fairer the sharing, the sooner B and
C finish; A's time says what fairness costs the backfill (messages, the gaps it no longer
carries on through).

``--compare PATH``: a checkout of other code (``git worktree add /tmp/old main``) whose
workers, and whose ``start_run`` (it decides what is queued), judge the same traces in
rounds alternated with this checkout's, ``--repeat`` times each: before and after side by
side at the same moment of a shared machine. The checkouts must share the schema.

Run: .venv/bin/python bench/fairness.py [--quick] [--traces N] [--workers N]
[--compare PATH] [--repeat N]
(REDIS_URL: the broker's database, flushed by the bench, redis://127.0.0.1:6379/6 by
default; BENCH_DB_PREFIX names the PostgreSQL database, iofold_bench_fairness by default.)
Last line: one JSON object.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432")
DB_NAME = f"{os.environ.get('BENCH_DB_PREFIX', 'iofold_bench_fairness')}_{os.getpid()}"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
SMALL = 200
CODE = 'def eval_fn(trace):\n    return "cannot" not in str(trace.get("output")), "ok"\n'

# Run in the checkout whose start_run queues the round's runs (its own code decides how
# many messages go to the broker and at which priority): it starts with the workers, waits
# for the runs to queue on its standard input, and prints their ids and the moment they
# were committed.
QUEUE = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from django.db import transaction
from evals.execution.runs import start_run
from evals.models import Eval
evals = json.loads(sys.stdin.readline())
with transaction.atomic():
    runs = [
        start_run(eval=Eval.objects.get(pk=pk), trace_ids=ids, trigger=trigger).pk
        for pk, ids, trigger in evals
    ]
print(json.dumps({"runs": runs, "committed": time.time()}))
"""


def _trace(workspace: str, n: int) -> dict:
    return {
        "id": f"{workspace}-{n}",
        "timestamp": f"2026-11-01T00:00:00.{n:06d}+00:00",
        "name": "fairness",
        "input": {"question": f"where is order {n}?"},
        "output": "Your refund is on its way." if n % 3 else "I cannot help with that.",
        "steps": [],
        "metadata": {},
        "tags": [],
    }


def seed(n_traces: int) -> list[tuple[int, list[int], str]]:
    """Create the three workspaces, their traces and evals; return what each round queues."""
    from evals.models import Eval
    from iofold.pipeline import ingest_traces
    from traces.models import EvalSet
    from workspaces.models import Workspace

    started = time.monotonic()
    queued = []
    plan = [("a", n_traces, "api"), ("b", SMALL, "manual"), ("c", SMALL, "api")]
    for slug, size, trigger in plan:
        workspace = Workspace.objects.create(name=slug.upper(), slug=slug)
        ids: list[int] = []
        for start in range(0, size, 5000):
            traces = [_trace(slug, n) for n in range(start, min(size, start + 5000))]
            ids += ingest_traces(workspace=workspace, source="api", traces=traces).trace_ids
        eval_set = EvalSet.objects.create(workspace=workspace, name="refusals", criteria="-")
        eval = Eval.objects.create(
            workspace=workspace, eval_set=eval_set, version=1, code=CODE, provider="offline"
        )
        queued.append((eval.pk, ids, trigger))
    print(f"seeded in {time.monotonic() - started:.1f} s", flush=True)
    return queued


class Round:
    """One round's workers and queueing process, started (they take seconds to be ready)."""

    def __init__(self, label: str, root: Path, env: dict, workers: int, logs: Path) -> None:
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        self.label = label
        self.queuer = subprocess.Popen(
            [sys.executable, "-c", QUEUE], cwd=root, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.workers = _start_workers(root, env, workers, logs)

    def run(self, queued) -> dict:
        from evals.models import EvalRun

        try:
            _wait_ready(self.workers)
            out, _ = self.queuer.communicate(json.dumps(queued) + "\n", timeout=300)
            sent = json.loads(out.strip().splitlines()[-1])
            deadline = time.monotonic() + 1800
            while EvalRun.objects.filter(pk__in=sent["runs"], status__in=["queued", "running"]):
                if time.monotonic() > deadline:
                    sys.exit("the runs did not finish within 30 minutes")
                time.sleep(0.2)
        finally:
            if self.queuer.poll() is None:
                self.queuer.kill()
            for p in self.workers:
                p.terminate()
            for p in self.workers:
                p.wait(timeout=60)
        runs = {r.pk: r for r in EvalRun.objects.filter(pk__in=sent["runs"])}
        a, b, c = (runs[pk] for pk in sent["runs"])
        assert {a.status, b.status, c.status} == {"succeeded"}, (a.status, b.status, c.status)
        assert (a.done, b.done, c.done) == (a.total, b.total, c.total)

        def seconds(run) -> float:
            return round(run.finished_at.timestamp() - sent["committed"], 2)

        return {
            "code": self.label,
            "b_manual_s": seconds(b),
            "c_background_s": seconds(c),
            "a_backfill_s": seconds(a),
            "a_chunks": a.chunks.count(),
        }


def _start_workers(root: Path, env: dict, n: int, logs: Path) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        log = logs / f"worker-{root.name}-{i}.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "iofold",
                    "worker",
                    "--pool=solo",
                    "--queues=default,execute",
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    f"--hostname=fairness{i}@%h",
                ],
                cwd=root,
                env=env,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
    return procs


def _wait_ready(procs: list[subprocess.Popen]) -> None:
    """Return once every worker answers a ping (its start-up recovery runs first)."""
    from iofold.celery import app

    deadline = time.monotonic() + 120
    while len(app.control.ping(timeout=0.5) or []) < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            sys.exit("Celery workers did not start; logs in var/bench-fairness-*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 traces, one round each")
    parser.add_argument("--traces", type=int, help="the backfill's traces (default 50,000)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--compare", help="a checkout of other code to alternate with")
    parser.add_argument("--repeat", type=int, help="rounds of each code (default 3, quick 1)")
    args = parser.parse_args()
    traces = args.traces or (10_000 if args.quick else 50_000)
    repeat = args.repeat or (1 if args.quick else 3)
    print("$ " + shlex.join([sys.executable, *sys.argv]), flush=True)

    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB_NAME}")
    chunk = os.environ.get("IOFOLD_EVAL_CHUNK_TRACES", "500" if args.quick else "5000")
    env = {**os.environ, "DATABASE_URL": f"{PG_URL}/{DB_NAME}", "CELERY_BROKER_URL": REDIS_URL,
           "DJANGO_SETTINGS_MODULE": "iofold.settings", "LOG_LEVEL": "WARNING",
           "IOFOLD_EVAL_CHUNK_TRACES": chunk}  # fmt: skip
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    logs = ROOT / "var" / f"bench-fairness-{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    codes = [("new", ROOT)] + ([("old", Path(args.compare).resolve())] if args.compare else [])
    rounds = []
    order = [code for n in range(repeat) for code in (codes if n % 2 == 0 else codes[::-1])]
    try:
        started = time.monotonic()
        call_command("migrate", verbosity=0)
        print(f"migrated in {time.monotonic() - started:.1f} s", flush=True)
        # The first round's processes start while the traces are loaded.
        first = Round(*order[0], env, args.workers, logs)
        queued = seed(traces)
        for n, code in enumerate(order):
            row = (first if n == 0 else Round(*code, env, args.workers, logs)).run(queued)
            print(json.dumps(row), flush=True)
            rounds.append(row)
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")

    summary = {}
    for label, _ in codes:
        mine = [r for r in rounds if r["code"] == label]
        summary[label] = {
            key: statistics.median(r[key] for r in mine)
            for key in ("b_manual_s", "c_background_s", "a_backfill_s")
        }
    print(
        json.dumps(
            {
                "traces": traces,
                "small_runs": SMALL,
                "chunk_traces": int(chunk),
                "workers": args.workers,
                "rounds": rounds,
                "median": summary,
            }
        )
    )


if __name__ == "__main__":
    main()
