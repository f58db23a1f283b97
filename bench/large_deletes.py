"""What deleting and importing cost at production scale: 100,000 traces with labels and runs.

Builds one workspace on a scratch PostgreSQL database (named per run from BENCH_DB_PREFIX,
dropped at the end): a Langfuse integration with 50 sync runs that synced 100,000 traces
(one conversation per 10), one eval set that hand-picked them all, one label on each, and
an eval version with one execution per trace. Then times:

- each delete path done in one web request: the eval set's row deleted whole (what a delete
  in the request, or the admin, does), every trace deleted at once (a bulk delete), and the
  integration deleted (its traces unlinked). Each runs in a transaction rolled back after,
  so the next finds the same data;
- the same deletions done in the background (traces.deletions): how long the request takes
  (it marks and queues), how long the worker's run takes and its longest batch (how long
  it holds its locks at a time);
- with ``--only integration``: the integration deleted in one request (its traces kept,
  unlinked: what the request did before December 2026), then in the background (the
  request marks it; the worker unlinks its traces in batches, then deletes it);
- a workspace import of the export archive (manage.py import_workspace, in a process of
  its own): wall time and the process's peak RSS, next to a process that imports nothing.

    python bench/large_deletes.py [--quick] [--traces N] [--only deletes|import|integration]
        [--compare-import DIR]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432; BENCH_DB_PREFIX names the
    database, iofold_bench_deletes by default)

--quick uses 5,000 traces. Last line of output: one JSON object of the figures.
"""

import argparse
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import PG_URL, run_on_scratch_database  # noqa: E402
from bench.load import server_env, set_keys  # noqa: E402

T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
BATCH = 5000


def load(n_traces: int) -> dict:
    """Bulk-create the workspace, its integration, traces, conversations, labels and runs."""
    from django.db import connection

    from accounts.models import User
    from evals.models import Eval, EvalExecution, EvalRun
    from integrations.models import Integration, SyncRun
    from traces.models import Conversation, EvalSet, EvalSetTrace, Feedback, Trace
    from workspaces.models import Membership, Workspace

    workspace = Workspace.objects.create(name="Bench", slug="bench")
    owner = User.objects.create_user(email="owner@bench.test", password="x")
    Membership.objects.create(workspace=workspace, user=owner, role="owner")
    integration = Integration.objects.create(
        workspace=workspace, name="Production Langfuse", public_key="pk-lf-bench"
    )
    SyncRun.objects.bulk_create(
        SyncRun(workspace=workspace, integration=integration, status="succeeded") for _ in range(50)
    )
    eval_set = EvalSet.objects.create(
        workspace=workspace,
        name="Support answers",
        criteria="Answers the question.",
        created_by=owner,
    )
    version = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="def eval_fn(t):\n    return True, 'ok'\n",
    )
    run = EvalRun.objects.create(workspace=workspace, eval=version, status="succeeded")
    key = f"i{integration.pk}"
    for start in range(0, n_traces, BATCH):
        numbers = range(start, min(n_traces, start + BATCH))
        conversations = Conversation.objects.bulk_create(
            Conversation(
                workspace=workspace,
                integration=integration,
                source="langfuse",
                source_key=key,
                external_id=f"session-{n // 10}",
                started_at=T0 + dt.timedelta(seconds=n),
                last_activity_at=T0 + dt.timedelta(seconds=n + 9),
                turn_count=10,
            )
            for n in numbers
            if n % 10 == 0
        )
        by_session = {c.external_id: c for c in conversations}
        traces = Trace.objects.bulk_create(
            Trace(
                workspace=workspace,
                integration=integration,
                source="langfuse",
                source_key=key,
                external_id=f"t{n}",
                name=f"agent-{n % 7}",
                timestamp=T0 + dt.timedelta(seconds=n),
                data={
                    "id": f"t{n}",
                    "input": {"question": f"Where is order {n}?"},
                    "output": "It ships today. " * 40,
                    "steps": [],
                    "session_id": f"session-{n // 10}",
                },
                search_text=f"where is order {n}",
                content_hash=f"{n:064d}",
                conversation=by_session.get(f"session-{n // 10}"),
            )
            for n in numbers
        )
        EvalSetTrace.objects.bulk_create(
            EvalSetTrace(workspace=workspace, eval_set=eval_set, trace=t) for t in traces
        )
        Feedback.objects.bulk_create(
            Feedback(
                workspace=workspace,
                eval_set=eval_set,
                trace=t,
                user=owner,
                rating="positive" if i % 3 else "negative",
                note="too vague" if i % 5 == 0 else "",
            )
            for i, t in enumerate(traces)
        )
        EvalExecution.objects.bulk_create(
            EvalExecution(
                workspace=workspace, eval=version, run=run, trace=t, passed=True, reason="ok"
            )
            for t in traces
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {
        "workspace": workspace,
        "owner": owner,
        "integration": integration,
        "eval_set": eval_set,
    }


class _Rollback(Exception):
    pass


def in_request(fn) -> float:
    """Return the seconds ``fn`` takes in one transaction (as a request does), rolled back."""
    from django.db import transaction

    started = time.perf_counter()
    try:
        with transaction.atomic():
            fn()
            elapsed = time.perf_counter() - started
            raise _Rollback
    except _Rollback:
        pass
    return round(elapsed, 2)


def _peak_rss_kib(pid: int) -> int:
    """Return a live process's peak resident memory so far (VmHWM), in KiB; 0 once gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((ln for ln in status.splitlines() if ln.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])


def rss_of(argv: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """Run ``argv``; return its wall seconds, its peak RSS in MiB and its output's end.

    The peak is read from the process's VmHWM while it runs: the rusage of a child counts
    the pages it shared with this process before its exec (this process holds the loaded
    rows), which would put this process's size into every figure.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _peak_rss_kib(proc.pid))
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{output[-2000:]}")
    return round(elapsed, 1), round(peak / 1024, 1), output.strip()[-200:]


def measure_import(ctx: dict, db_name: str, code: Path) -> dict:
    """Export the workspace, then import it as a copy in a process of its own, with the
    code in ``code`` (this checkout, or another to compare) and production settings."""
    from django.core.management import call_command

    # Production settings: DEBUG keeps every query's SQL, a figure of the debug log.
    env = server_env(f"{PG_URL}/{db_name}")
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "bench.jsonl.gz"
        call_command("export_workspace", ctx["workspace"].slug, str(archive), stderr=io.StringIO())
        python = sys.executable
        _, idle_rss, _ = rss_of(
            [python, "manage.py", "shell", "-c", "import iofold.workspace_data"], env, code
        )
        slug = f"bench-copy-{int(time.time() * 1000) % 10**9}"
        seconds, rss, tail = rss_of(
            [python, "manage.py", "import_workspace", str(archive), "--slug", slug], env, code
        )
        size = archive.stat().st_size
    print(f"  import tail: {tail.splitlines()[0][:120]}")
    return {
        "archive_mib": round(size / 2**20, 1),
        "import_s": seconds,
        "import_peak_rss_mib": rss,
        "idle_process_rss_mib": idle_rss,
    }


def measure_background(ctx: dict, kinds: list[str]) -> dict:
    """Delete the eval set, every trace or the integration (``kinds``, in order) as the
    background runs do; time each part."""
    try:
        from traces import deletions
    except ImportError:
        return {}
    from iofold.lib.tasks import registered_task
    from traces.models import Trace

    # A process's first enqueue imports every tasks module: a cost of the first request a
    # web process serves, not of a deletion.
    registered_task(deletions.DELETION_TASK)
    starts = {
        "eval_set": lambda: deletions.request_eval_set_deletion(
            eval_set=ctx["eval_set"], user=ctx["owner"]
        ),
        "traces": lambda: deletions.request_traces_deletion(
            workspace=ctx["workspace"],
            trace_ids=list(
                Trace.objects.for_workspace(ctx["workspace"]).values_list("pk", flat=True)
            ),
            user=ctx["owner"],
        ),
        "integration": lambda: deletions.request_integration_deletion(
            integration=ctx["integration"], user=ctx["owner"]
        ),
    }
    out = {}
    for name in kinds:
        start = starts[name]
        started = time.perf_counter()
        run = start()
        request_s = time.perf_counter() - started
        batches: list[float] = []
        started = time.perf_counter()
        deletions.execute_deletion(run_id=run.pk, on_batch=batches.append)
        run.refresh_from_db()
        out[f"background_{name}"] = {
            "request_s": round(request_s, 2),
            "worker_s": round(time.perf_counter() - started, 1),
            "batches": len(batches),
            "longest_batch_s": round(max(batches, default=0), 2),
            "status": run.status,
            "done": run.done,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 traces")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument(
        "--only",
        choices=["deletes", "import", "integration"],
        help="measure the deletions, the import, or the integration's deletion only",
    )
    parser.add_argument(
        "--compare-import",
        type=Path,
        help="also import with the code of this checkout (e.g. `git archive main` unpacked)",
    )
    args = parser.parse_args()
    n_traces = args.traces or (5_000 if args.quick else 100_000)
    prefix = os.environ.get("BENCH_DB_PREFIX", "iofold_bench_deletes")
    db_name = f"{prefix}_deletes_{os.getpid()}_{int(time.time())}"
    result: dict = {"traces": n_traces}

    def body() -> None:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        ctx = load(n_traces)
        print(f"loaded {n_traces:,} traces in {time.perf_counter() - started:.0f} s")
        from integrations.services import delete_integration
        from traces.models import Trace

        workspace = ctx["workspace"]
        if args.only == "integration":
            result["in_request_s"] = {
                "delete integration": in_request(
                    lambda: delete_integration(
                        integration=type(ctx["integration"]).objects.get(pk=ctx["integration"].pk)
                    )
                )
            }
            print(f"  in one request: delete integration {result['in_request_s']} s")
            result.update(measure_background(ctx, ["integration"]))
            print(f"  background_integration: {result.get('background_integration')}")
            return
        if args.only != "deletes":
            result.update(measure_import(ctx, db_name, ROOT))
            print(
                f"  import: {result['import_s']} s, peak RSS {result['import_peak_rss_mib']} "
                f"MiB (a process importing nothing: {result['idle_process_rss_mib']} MiB; "
                f"archive {result['archive_mib']} MiB)"
            )
            if args.compare_import:
                other = measure_import(ctx, db_name, args.compare_import)
                result["compared_import"] = {"code": str(args.compare_import), **other}
                print(f"  import with {args.compare_import}: {other}")
        if args.only == "import":
            return
        result["in_request_s"] = {
            # Fresh instances: delete() clears the pk of the instance it was called on.
            "delete eval set row": in_request(
                lambda: type(ctx["eval_set"]).objects.get(pk=ctx["eval_set"].pk).delete()
            ),
            "bulk delete traces": in_request(
                lambda: Trace.objects.for_workspace(workspace).delete()
            ),
            "delete integration": in_request(
                lambda: delete_integration(
                    integration=type(ctx["integration"]).objects.get(pk=ctx["integration"].pk)
                )
            ),
        }
        for name, seconds in result["in_request_s"].items():
            print(f"  in one request: {name:<22} {seconds:>8.2f} s")
        for name, figures in measure_background(ctx, ["eval_set", "traces"]).items():
            result[name] = figures
            print(f"  {name}: {figures}")

    set_keys()  # this process and the import's share them (production settings need them)
    run_on_scratch_database(db_name, body)
    print("command: python " + " ".join(sys.argv))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
