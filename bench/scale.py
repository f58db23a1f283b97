"""Every page, every API list and the per-trace and periodic tasks on a workspace of 100k traces.

Loads one workspace on a PostgreSQL database (bench/review.py's loader, then: traces of
three sources, a Langfuse integration with sync runs, conversations of 2 to 8 turns,
labels of three reviewers on three eval sets, three versions per set (draft, active,
shadow) with runs and verdicts on most traces, labels after the activation for drift,
comments, activity). Then walks every GET URL the resolver lists (the web UI as an owner
who is also staff, so the admin too; the API with a token), through the Django test
client with production settings, and reports per request: the status, SQL statements,
SQL ms (sum), the slowest statement's ms, the response's bytes and wall ms (median of
--runs). The slowest statements of the worst requests are printed with EXPLAIN ANALYZE,
and sequential scans over the big tables are flagged. Then the tasks: ingesting 100 new
traces with its continuous evaluation (runs started, not executed: that is the sandbox),
and each periodic task once.

Statement counts are the figures to compare between commits; wall and SQL ms are noise on
a shared machine (compare orders of magnitude).

Figures measured with it (before / after a change) are in README.md, after "Every page and
API answer at 100,000 traces"; the dashboard's pass rate and drift: 17 / 16 statements and
1,071 / 598 ms of SQL for the dashboard at 100,000 traces (--keep, --only eval).

    python bench/scale.py [--quick] [--traces N] [--runs N] [--only TEXT] [--keep]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432; BENCH_DB_PREFIX names the
    database, iofold_bench by default; --keep leaves it, and a later --keep run with the same
    size reuses it instead of loading again)

Last line of output: one JSON object, {"pages": {url: {...}}, "tasks": {name: {...}}}.
"""

import argparse
import datetime as dt
import json
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import PG_URL, _admin_execute  # noqa: E402

BIG_TABLES = (
    "traces_trace",
    "evals_evalexecution",
    "traces_feedback",
    "traces_evalsettrace",
    "traces_conversation",
    "traces_labelchange",
    "evals_evalrun",
)
# Segment before an <int:...> in a route → the kind of row it names.
SEGMENT_KIND = {
    "integrations": "integration",
    "uploads": "upload_run",
    "sync-runs": "sync_run",
    "traces": "trace",
    "conversations": "conversation",
    "turns": "turn",
    "eval-sets": "eval_set",
    "sets": "eval_set",
    "labels": "label",
    "evals": "eval",
    "generations": "generation",
    "refinements": "refinement",
    "eval-runs": "eval_run",
    "feedback": "label",
    "members": "membership",
}


def load(n_traces: int) -> None:
    """Load the workspace (see the module docstring)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.models import F
    from django.utils import timezone

    from bench.review import load as load_review
    from evals.models import Activity, Comment, Eval, EvalExecution, EvalRun, Generation
    from integrations.models import Integration, SyncRun
    from traces.models import Conversation, EvalSet, Feedback, LabelChange, Trace

    n_labels = max(1000, n_traces // 10)
    workspace, manual, billing, users = load_review(n_traces, n_labels)
    get_user_model().objects.filter(pk=users[0].pk).update(is_staff=True, is_superuser=True)
    rng = random.Random(11)
    now = timezone.now()
    langfuse = Integration.objects.create(
        workspace=workspace,
        name="Langfuse prod",
        kind="langfuse",
        public_key="pk-lf-x",
        secret_key="sk-lf-x",
        status="ok",
        last_synced_at=now,
    )
    otlp = Integration.objects.create(workspace=workspace, name="OTLP", kind="otlp", status="ok")
    SyncRun.objects.bulk_create(
        SyncRun(
            workspace=workspace,
            integration=langfuse,
            status="done",
            trigger="schedule",
            created_count=rng.randint(0, 500),
            finished_at=now - dt.timedelta(minutes=10 * i),
        )
        for i in range(500)
    )
    ids = list(
        Trace.objects.filter(workspace=workspace).order_by("id").values_list("id", flat=True)
    )
    third = len(ids) // 3
    Trace.objects.filter(pk__in=ids[:third]).update(
        source="langfuse", source_key=f"i{langfuse.pk}", integration=langfuse
    )
    Trace.objects.filter(pk__in=ids[third : 2 * third]).update(
        source="otlp", source_key=f"i{otlp.pk}", integration=otlp
    )
    # Conversations: a quarter of the traces, as turns of 2 to 8 in time order.
    turns = ids[: len(ids) // 4]
    conversations, groups, i = [], [], 0
    while i < len(turns):
        size = rng.randint(2, 8)
        groups.append(turns[i : i + size])
        i += size
    stamps = dict(Trace.objects.filter(pk__in=turns).values_list("id", "timestamp"))
    for n, group in enumerate(groups):
        conversations.append(
            Conversation(
                workspace=workspace,
                integration=langfuse,
                source="langfuse",
                source_key=f"i{langfuse.pk}",
                external_id=f"session-{n}",
                started_at=stamps[group[0]],
                last_activity_at=stamps[group[-1]],
                turn_count=len(group),
                completed_at=stamps[group[-1]],
                completion_count=1,
                anchor_id=group[0],
            )
        )
    Conversation.objects.bulk_create(conversations, batch_size=5000)
    with connection.cursor() as cursor:
        # The loader's payloads in the normalised shape ingestion stores (DESIGN.md).
        cursor.execute(
            "UPDATE traces_trace SET data = (data::jsonb || jsonb_build_object("
            " 'timestamp', timestamp, 'user_id', NULL, 'session_id', NULL,"
            " 'latency_ms', latency_ms, 'cost', NULL, 'steps', (SELECT jsonb_agg("
            ' \'{"input": null, "output": null, "model": null, "usage": null,'
            ' "start_time": null, "end_time": null, "metadata": {}}\'::jsonb || s)'
            " FROM jsonb_array_elements(data::jsonb -> 'steps') s)))::json"
            " WHERE workspace_id = %s",
            [workspace.pk],
        )
        cursor.execute(
            "UPDATE traces_trace t SET conversation_id = c.id FROM traces_conversation c,"
            " unnest(%s::bigint[], %s::bigint[]) AS g(trace_id, n)"
            " WHERE t.id = g.trace_id AND c.workspace_id = %s"
            " AND c.external_id = 'session-' || g.n",
            [
                [pk for group in groups for pk in group],
                [n for n, group in enumerate(groups) for _ in group],
                workspace.pk,
            ],
        )
    # The third set: every trace, labelled by the third reviewer (newest first, as reviewed).
    everything = EvalSet.objects.create(
        workspace=workspace,
        name="All answers",
        criteria="Helpful.",
        source_kind=EvalSet.SourceKind.FILTER,
        saved_filter={},
        created_by=users[2],
    )
    activated = now - dt.timedelta(days=30)
    newest = ids[::-1][: n_labels // 2]
    Feedback.objects.bulk_create(
        (
            Feedback(
                workspace=workspace,
                eval_set=everything,
                trace_id=pk,
                user=users[2],
                rating=rng.choices(["positive", "negative", "neutral"], weights=[5, 4, 1])[0],
                note="too vague" if rng.random() < 0.1 else "",
            )
            for pk in newest
        ),
        batch_size=5000,
    )
    # Labels spread over 60 days: half of them after the activation (drift counts those).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE traces_feedback SET created_at = now() - (random() * interval '60 days'),"
            " updated_at = created_at WHERE workspace_id = %s",
            [workspace.pk],
        )
        cursor.execute(
            "UPDATE traces_feedback SET updated_at = created_at WHERE workspace_id = %s",
            [workspace.pk],
        )
    LabelChange.objects.bulk_create(
        (
            LabelChange(
                workspace=workspace,
                eval_set_id=f.eval_set_id,
                trace_id=f.trace_id,
                labeller_id=f.user_id,
                changed_by_id=f.user_id,
                action="created",
                origin="review",
                rating_after=f.rating,
            )
            for f in Feedback.objects.filter(workspace=workspace)
            .only("eval_set_id", "trace_id", "user_id", "rating")
            .iterator()
        ),
        batch_size=5000,
    )
    code = 'def eval_fn(trace):\n    return "cannot" not in str(trace.get("output")), "ok"\n'
    members = {
        manual.pk: list(manual.memberships.values_list("trace_id", flat=True)),
        billing.pk: list(Trace.objects.in_eval_set(billing).values_list("id", flat=True)),
        everything.pk: ids,
    }
    metrics = {"training": {"labelled": 100, "kappa": 0.6, "balanced_accuracy": 0.8}}
    for eval_set in (manual, billing, everything):
        versions = []
        for v, status in ((1, "draft"), (2, "active"), (3, "shadow")):
            versions.append(
                Eval.objects.create(
                    workspace=workspace,
                    eval_set=eval_set,
                    version=v,
                    code=code,
                    status=status,
                    parent=versions[-1] if versions else None,
                    provider="offline",
                    metrics=metrics,
                    agreement=0.8,
                    labels_tested=100,
                    activated_at=activated if status == "active" else None,
                    shadow_since=now - dt.timedelta(days=7) if status == "shadow" else None,
                    created_by=users[0],
                )
            )
            Activity.objects.create(
                workspace=workspace,
                eval_set=eval_set,
                actor=users[0],
                verb="activated" if status == "active" else "shadowed",
                eval=versions[-1],
            )
        Generation.objects.bulk_create(
            Generation(
                workspace=workspace,
                eval_set=eval_set,
                status="done",
                provider="offline",
                result=versions[i % 3],
                created_by=users[0],
            )
            for i in range(20)
        )
        traced = members[eval_set.pk]
        for version, share in zip(versions, (0.1, 0.9, 0.3), strict=True):
            judged = traced[: int(len(traced) * share)]
            runs = EvalRun.objects.bulk_create(
                EvalRun(
                    workspace=workspace,
                    eval=version,
                    trigger="automatic",
                    status="done",
                    trace_ids=judged[start : start + 200],
                    total=len(judged[start : start + 200]),
                    done=len(judged[start : start + 200]),
                    finished_at=now,
                )
                for start in range(0, len(judged), 200)
            )
            EvalExecution.objects.bulk_create(
                (
                    EvalExecution(
                        workspace=workspace,
                        eval=version,
                        run=runs[k // 200],
                        trace_id=pk,
                        passed=None if rng.random() < 0.01 else rng.random() < 0.7,
                        reason="seeded",
                        duration_ms=0.2,
                        score_pushed_at=now,
                    )
                    for k, pk in enumerate(judged)
                ),
                batch_size=10000,
            )
        Comment.objects.bulk_create(
            Comment(workspace=workspace, author=users[1], eval=versions[1], body=f"note {i}")
            for i in range(50)
        )
    from evals.models import AutomationSettings

    AutomationSettings.objects.create(workspace=workspace, auto_refine=True, auto_promote=True)
    hour = dt.timedelta(hours=1)
    for model in (Trace, EvalExecution):
        model.objects.filter(workspace=workspace).update(
            created_at=F("created_at") - hour, updated_at=F("created_at") - hour
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def context() -> dict:
    """Return sample rows of each kind the URLs name, and the users' credentials."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from evals.models import AutoRefinement, Eval, EvalRun, Generation
    from integrations.models import Integration, SyncRun, UploadRun
    from traces.models import Conversation, EvalSet, Feedback
    from workspaces.models import Membership, Workspace
    from workspaces.services import issue_token

    workspace = Workspace.objects.get(slug="bench")
    owner = Membership.objects.filter(workspace=workspace).order_by("id")[0].user
    eval_set = EvalSet.objects.filter(workspace=workspace).order_by("id")[0]
    evals = Eval.objects.filter(eval_set=eval_set, status="active")
    conversation = Conversation.objects.filter(workspace=workspace).order_by("-id")[0]
    label = Feedback.objects.filter(eval_set=eval_set).order_by("id")[0]
    rows = {
        "eval_set": eval_set.pk,
        "eval": evals[0].pk,
        "trace": label.trace_id,
        "label": label.pk,
        "conversation": conversation.pk,
        "turn": conversation.anchor_id,
        "integration": Integration.objects.filter(workspace=workspace, kind="langfuse")[0].pk,
        "sync_run": SyncRun.objects.filter(workspace=workspace).order_by("-id")[0].pk,
        "eval_run": EvalRun.objects.filter(eval=evals[0]).order_by("-id")[0].pk,
        "generation": Generation.objects.filter(workspace=workspace).order_by("-id")[0].pk,
        "membership": Membership.objects.filter(workspace=workspace)[0].pk,
    }
    for key, model in (("upload_run", UploadRun), ("refinement", AutoRefinement)):
        row = model.objects.filter(workspace=workspace).first()
        rows[key] = row.pk if row else 0
    store = SessionStore()
    store[SESSION_KEY] = str(owner.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = owner.get_session_auth_hash()
    store.create()
    _, token = issue_token(workspace=workspace, name="scale", created_by=owner, role="member")
    admin_ids = {
        "traces_trace": rows["trace"],
        "traces_evalset": rows["eval_set"],
        "evals_eval": rows["eval"],
        "evals_evalrun": rows["eval_run"],
        "traces_conversation": rows["conversation"],
        "traces_feedback": rows["label"],
        "integrations_integration": rows["integration"],
        "integrations_syncrun": rows["sync_run"],
        "workspaces_workspace": workspace.pk,
        "accounts_user": owner.pk,
    }
    return {
        "slug": workspace.slug,
        "workspace": workspace.pk,
        "rows": rows,
        "admin_ids": admin_ids,
        "session": store.session_key,
        "token": token,
    }


def routes() -> list[tuple[str, str]]:
    """Return (route, name) of every URL pattern, as the resolver lists them."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found = []

    def walk(patterns, prefix, namespace):
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = f"{namespace}:{p.namespace}" if p.namespace else namespace
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern):
                found.append((prefix + str(p.pattern), f"{namespace}:{p.name}".lstrip(":")))

    walk(get_resolver().url_patterns, "/", "")
    return found


def fill(route: str, name: str, ctx: dict) -> str | None:
    """Return the route with sample values for its parameters, or None (nothing to show)."""
    if "(?P<" in route or "^" in route or "<path:" in route and "change" not in name:
        return None
    if "<path:object_id>" in route:
        model = name.split(":")[-1].removesuffix("_change")
        if model not in ctx["admin_ids"]:
            return None
        return route.replace("<path:object_id>", str(ctx["admin_ids"][model]))
    out, previous = [], ""
    for part in route.split("/"):
        match = re.fullmatch(r"<(?:(\w+):)?(\w+)>", part)
        if not match:
            out.append(part)
            previous = part
            continue
        converter, arg = match.groups()
        if arg == "slug":
            out.append(ctx["slug"])
            continue
        if converter != "int":
            return None
        kind = {"run_pk": None, "trace_pk": "trace", "label_pk": "label"}.get(arg, "")
        if arg == "run_pk":
            kind = {"uploads": "upload_run"}.get(previous) or (
                "sync_run" if "integrations" in route else "eval_run"
            )
        kind = kind or SEGMENT_KIND.get(previous)
        if route.endswith("/turns/<int:trace_pk>/steps/"):
            kind = "turn" if arg == "trace_pk" else kind
        value = ctx["rows"].get(kind or "", 0)
        if not value:
            return None
        out.append(str(value))
    return "/".join(out)


SKIP = ("logout", "delete", "remove", "revoke", "leave", "cancel", "export.py", "webhook")


def explain(sql: str) -> str:
    """Return EXPLAIN ANALYZE of a captured statement (its parameters inlined by Django)."""
    from django.db import connection

    if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
        return ""
    try:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
            return "\n".join(row[0] for row in cursor.fetchall())
    except Exception as exc:  # a statement that does not stand alone (a cursor's FETCH)
        return f"(not explained: {exc.__class__.__name__})"


def measure_page(client, url: str, runs: int) -> tuple[dict, list[dict]]:
    """GET ``url`` (a warm-up, then ``runs`` times): figures and the last call's statements."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    walls: list[float] = []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:  # the last call's are kept
            start = time.perf_counter()
            response = client.get(url)
            walls.append((time.perf_counter() - start) * 1000)
    statements = captured.captured_queries
    times = [float(q["time"]) * 1000 for q in statements]
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return {
        "status": response.status_code,
        "queries": len(statements),
        "sql_ms": round(sum(times), 1),
        "slowest_ms": round(max(times, default=0), 1),
        "bytes": len(content),
        "wall_ms": round(statistics.median(walls), 1),
    }, statements


def seq_scans(plan: str) -> list[str]:
    return sorted(set(re.findall(r"Seq Scan on (\w+)", plan)) & set(BIG_TABLES))


def walk_pages(ctx: dict, runs: int, only: str) -> tuple[dict, dict]:
    from django.test import Client

    # A page that fails is reported with its status (and logged), not a stop of the walk.
    page = Client(HTTP_HOST="127.0.0.1", raise_request_exception=False)
    page.cookies["sessionid"] = ctx["session"]
    api = Client(
        HTTP_HOST="127.0.0.1",
        raise_request_exception=False,
        HTTP_AUTHORIZATION=f"Bearer {ctx['token']}",
    )
    results, plans = {}, {}
    print(f"{'url':<72} {'st':>3} {'sql#':>5} {'sql ms':>7} {'max ms':>7} {'KB':>6} {'ms':>7}")
    for route, name in routes():
        url = fill(route, name, ctx)
        if url is None or any(word in url for word in SKIP) or only not in url:
            continue
        client = api if url.startswith(("/api/", "/v1/")) else page
        row, statements = measure_page(client, url, runs)
        slowest = sorted(statements, key=lambda q: -float(q["time"]))[:2]
        row["seq_scans"] = sorted(
            {t for q in slowest if float(q["time"]) > 0.005 for t in seq_scans(explain(q["sql"]))}
        )
        results[url] = row
        plans[url] = slowest
        print(
            f"{url[:72]:<72} {row['status']:>3} {row['queries']:>5} {row['sql_ms']:>7} "
            f"{row['slowest_ms']:>7} {row['bytes'] // 1024:>6} {row['wall_ms']:>7}"
            + (f"  SEQ {','.join(row['seq_scans'])}" if row["seq_scans"] else "")
        )
    return results, plans


def run_tasks(ctx: dict) -> dict:
    """Per new batch and periodic tasks, once each: statements, SQL ms, wall ms."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.load import _trace
    from evals.execution.continuous import start_automatic_runs
    from evals.execution.drift import eval_set_drift
    from evals.execution.scores import push_pending_scores
    from evals.generation.automatic import sweep
    from iofold.pipeline import ingest_traces
    from iofold.reaper import reap_stale_runs_task
    from traces.conversations import complete_idle_conversations
    from traces.models import EvalSet
    from workspaces.models import Workspace
    from workspaces.tasks import delete_due_workspaces_task

    workspace = Workspace.objects.get(pk=ctx["workspace"])
    state: dict = {}

    def ingest():
        traces = [
            _trace(10_000_000 + int(time.time() * 1000) % 10_000_000 + i, "scale")
            for i in range(100)
        ]
        state["ids"] = list(
            ingest_traces(workspace=workspace, source="api", traces=traces).trace_ids
        )

    tasks = {
        "ingest 100 traces": ingest,
        "start automatic runs (100 new traces)": lambda: start_automatic_runs(
            workspace_id=workspace.pk, trace_ids=state["ids"], enqueue=False
        ),
        "drift of each set": lambda: [
            eval_set_drift(eval_set=s) for s in EvalSet.objects.for_workspace(workspace)
        ],
        "reap stale runs": reap_stale_runs_task,
        "resend undelivered scores": push_pending_scores,
        "complete idle conversations": complete_idle_conversations,
        "refine drifting evals": lambda: sweep(enqueue=False),
        "delete workspaces when due": delete_due_workspaces_task,
    }
    out = {}
    print(f"\n{'task':<44} {'sql#':>5} {'sql ms':>8} {'max ms':>7} {'ms':>8}")
    for name, fn in tasks.items():
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            fn()
            wall = (time.perf_counter() - start) * 1000
        times = [float(q["time"]) * 1000 for q in captured.captured_queries]
        slowest = max(captured.captured_queries, key=lambda q: float(q["time"]), default=None)
        row = {
            "queries": len(times),
            "sql_ms": round(sum(times), 1),
            "slowest_ms": round(max(times, default=0), 1),
            "wall_ms": round(wall, 1),
            "seq_scans": seq_scans(explain(slowest["sql"])) if slowest else [],
        }
        out[name] = row
        print(
            f"{name:<44} {row['queries']:>5} {row['sql_ms']:>8} {row['slowest_ms']:>7} "
            f"{row['wall_ms']:>8}"
            + (f"  SEQ {','.join(row['seq_scans'])}" if row["seq_scans"] else "")
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--only", default="", help="only the URLs holding this")
    parser.add_argument("--worst", type=int, default=8, help="EXPLAIN the N worst pages")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    args = parser.parse_args()
    n_traces = args.traces or (5_000 if args.quick else 100_000)
    runs = args.runs or (1 if args.quick else 3)
    prefix = os.environ.get("BENCH_DB_PREFIX", "iofold_bench")
    db_name = f"{prefix}_scale_{n_traces}" if args.keep else f"{prefix}_scale_{os.getpid()}"

    from bench.load import set_keys

    # Fixed keys with --keep: the stored credentials and sessions must stay readable.
    if args.keep:
        os.environ["SECRET_KEY"] = "bench-scale-" + "k" * 40
        os.environ["IOFOLD_ENCRYPTION_KEYS"] = "vDyp1mU2HgY4L4m3d4Y0n9hJ3p2c9JrVv0bq7E0lYzQ="
    else:
        set_keys()
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("IOFOLD_INGEST_TRACES_PER_MINUTE", "100000000")
    os.environ["STATIC_ROOT"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / db_name)
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone()
    fresh = not (args.keep and exists)
    if fresh:
        _admin_execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        _admin_execute(f"CREATE DATABASE {db_name}")
    os.environ["DATABASE_URL"] = f"{PG_URL}/{db_name}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iofold.settings")
    import django

    django.setup()
    import logging

    # 405s of POST-only URLs and 403s are expected; a 500 shows in the table.
    logging.disable(logging.ERROR)
    from django.core.management import call_command
    from django.db import connections

    result: dict = {}
    try:
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if fresh:
            start = time.perf_counter()
            load(n_traces)
            print(f"loaded {n_traces} traces in {time.perf_counter() - start:.0f} s")
        from django.core.cache import cache

        cache.clear()
        ctx = context()
        pages, plans = walk_pages(ctx, runs, args.only)
        worst = sorted(pages, key=lambda url: -pages[url]["sql_ms"])[: args.worst]
        print("\nSlowest statements of the pages with the most SQL time:")
        for url in worst:
            for q in plans[url][:1]:
                print(f"\n== {url}  ({float(q['time']) * 1000:.1f} ms)\n{q['sql'][:600]}")
                print(explain(q["sql"]))
        result = {"pages": pages, "tasks": run_tasks(ctx) if not args.only else {}}
    finally:
        connections.close_all()
        if not args.keep:
            _admin_execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
    flag = " --quick" if args.quick else ""
    print(f"\nreproduce: python bench/scale.py{flag} --traces {n_traces} --runs {runs}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
