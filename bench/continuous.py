"""Benchmark continuous evaluation: sync -> automatic execution -> score push, per stage.

New traces are synced from a fake Langfuse (its own process) into a PostgreSQL database
created and dropped here; the ingestion hook's notifications are collected instead of
queued, then the automatic runs execute in the sandbox (nsjail) and their verdicts are
pushed back to the fake as scores. The reference is the sandbox alone on the same traces
in the same calls (run_json over text already in memory): the floor the execution stage
cannot beat.

The fake's own CPU time during the score push is measured apart (it runs in its own
process), so the push figure can be read as ours plus the fake's.

Run: .venv/bin/python bench/continuous.py [--quick] [--traces N] [--profile STAGE]
(--profile sync|execute|push writes a cProfile of that stage to var/ and prints its top.)
"""

import argparse
import json
import os
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
DB_NAME = "iofold_bench_continuous"
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


def _cpu_seconds(pid: int) -> float:
    """Return the user+system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def pipeline(url: str, base: str, traces: int, server_pid: int, profile: str | None) -> dict:
    """Child: sync, execute the automatic runs, push scores; time each stage."""
    import django

    django.setup()
    from django.utils import timezone

    import sandbox
    from evals import tasks
    from evals.execution import continuous
    from evals.execution.runs import EXECUTE_CHUNK, trace_json
    from evals.execution.scores import push_run_scores
    from evals.models import Eval, EvalExecution
    from evals.sandboxing import sandbox_limits
    from integrations import services
    from traces.models import EvalSet
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
    eval = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code=EVAL_CODE,
        status=Eval.Status.ACTIVE,
        activated_at=timezone.now(),
    )
    # What the worker would receive: the hook's notifications, one per synced page.
    notifications: list[list[int]] = []
    tasks.run_automatic_evals_task.delay = lambda ws, ids: notifications.append(ids)

    with _Stage("sync", profile) as sync:
        run = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    assert run.status == "succeeded", run.error
    runs = []
    with _Stage("execute", profile) as execute:
        for ids in notifications:
            runs += continuous.start_automatic_runs(
                workspace_id=workspace.pk, trace_ids=ids, enqueue=False
            )
        for eval_run in runs:
            finished = continuous.execute_run(run_id=eval_run.pk)
            assert finished.status == "succeeded", finished.error
    pushed = 0
    server_cpu = _cpu_seconds(server_pid)
    with _Stage("push", profile) as push:
        for eval_run in runs:
            pushed += push_run_scores(run=eval_run).pushed
    server_cpu = _cpu_seconds(server_pid) - server_cpu

    judged = EvalExecution.objects.filter(eval=eval).count()
    delivered = EvalExecution.objects.filter(eval=eval, score_pushed_at__isnull=False).count()
    assert judged == traces and delivered == traces == pushed, (judged, delivered, pushed)

    # Reference: the sandbox alone, in the very calls the execute stage makes (each run's
    # traces in EXECUTE_CHUNK chunks), over JSON text already in memory: what is left when
    # every database read and write, and every per-trace step outside the jail, is free.
    calls = []
    for eval_run in runs:
        for start in range(0, len(eval_run.trace_ids), EXECUTE_CHUNK):
            chunk = eval_run.trace_ids[start : start + EXECUTE_CHUNK]
            calls.append(trace_json(workspace_id=workspace.pk, trace_ids=chunk)[1])
    ref_start = time.perf_counter()
    for texts in calls:
        sandbox.run_json(EVAL_CODE, texts, sandbox_limits())
    sandbox_only = time.perf_counter() - ref_start
    return {
        "sync_s": sync.seconds,
        "execute_s": execute.seconds,
        "push_s": push.seconds,
        "push_server_cpu_s": server_cpu,
        "cpu_s": {"sync": sync.cpu, "execute": execute.cpu, "push": push.cpu},
        "end_to_end_s": sync.seconds + execute.seconds + push.seconds,
        "sandbox_only_s": sandbox_only,
        "runs": len(runs),
        "notifications": len(notifications),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 traces instead of 10,000")
    parser.add_argument("--traces", type=int)
    parser.add_argument("--profile", choices=["sync", "execute", "push"])
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
        result = pipeline(args.url, args.base, traces, args.server_pid, args.profile)
        return print(json.dumps(result))

    import psycopg

    admin = psycopg.connect(ADMIN_URL.replace("postgres://", "postgresql://"), autocommit=True)
    admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {DB_NAME}")
    db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "iofold.settings",
           "LOG_LEVEL": "WARNING"}  # fmt: skip
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
             f"--traces={traces}", f"--server-pid={server.pid}",
             *([f"--profile={args.profile}"] if args.profile else [])],
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
    print(f"traces: {traces} new, 5 observations each; {r['notifications']} ingestion "
          f"notifications -> {r['runs']} automatic runs")  # fmt: skip
    stages = (("sync", "sync"), ("execute", "execute"), ("score push", "push"))
    for label, stage in stages:
        seconds = r[f"{stage}_s"]
        print(f"{label:>12}: {seconds:7.2f} s  {traces / seconds:8.0f} traces/s  "
              f"(pipeline process CPU {r['cpu_s'][stage]:.2f} s)")  # fmt: skip
    print(f"{'':>12}  of which the fake server's own CPU: {r['push_server_cpu_s']:.2f} s "
          "(not iofold's)")  # fmt: skip
    total = r["end_to_end_s"]
    print(f"{'end to end':>12}: {total:7.2f} s  {traces / total:8.0f} traces/s")
    print(f"{'sandbox only':>12}: {r['sandbox_only_s']:7.2f} s  "
          f"{traces / r['sandbox_only_s']:8.0f} traces/s (reference for execute)")  # fmt: skip
    print(f"execute / sandbox-only time: {r['execute_s'] / r['sandbox_only_s']:.2f}")
    flag = (" --quick" if args.quick else "") + (f" --traces={args.traces}" if args.traces else "")
    print(f"reproduce: .venv/bin/python bench/continuous.py{flag}")
    print(json.dumps({
        "traces": traces,
        "end_to_end_seconds": round(r["end_to_end_s"], 2),
        "end_to_end_traces_per_second": round(traces / r["end_to_end_s"], 1),
        "sync_traces_per_second": round(traces / r["sync_s"], 1),
        "execute_traces_per_second": round(traces / r["execute_s"], 1),
        "push_traces_per_second": round(traces / r["push_s"], 1),
        "push_fake_server_cpu_seconds": round(r["push_server_cpu_s"], 2),
        "process_cpu_seconds": {k: round(v, 2) for k, v in r["cpu_s"].items()},
        "sandbox_only_traces_per_second": round(traces / r["sandbox_only_s"], 1),
        "execute_over_sandbox_only": round(r["execute_s"] / r["sandbox_only_s"], 2),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
