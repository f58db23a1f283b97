"""What each page and API answer costs and weighs with real teams' largest data.

Builds one workspace on a scratch PostgreSQL database (named per run, dropped at the end)
holding a trace of 5,000 steps, a 5 MB output, a 200-level nested input (stored as before
ingest limited nesting), 20,000-character lines without spaces, 500 tags, a 1 MB tool-call
argument, a conversation of 2,000 turns, an eval set of 10,000 labels with a 10,000-character
note, two 3,000-line versions that share no line and one whose single line is 50,000
characters. Then requests every page and API answer that shows them through the Django test
client with production settings, and prints per request: the status, the response's bytes,
the process CPU ms (median of 5 runs after a warm-up, or of one cold run with --quick; the
test client's share included) and whether the page says it cut something, with a way to the
rest ("cut"). CPU time on a shared machine is noisy: compare orders of magnitude, or count
instructions (valgrind --tool=callgrind python bench/big_data.py --quick --only NAME).

    python bench/big_data.py [--quick] [--runs N] [--only TEXT]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432; BENCH_DB_PREFIX names the
    database, iofold_bench_big by default)

Last line of output: one JSON object, {name: {status, bytes, cpu_ms_p50, cut}}.
"""

import argparse
import datetime as dt
import json
import os
import random
import statistics
import string
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import run_as_production  # noqa: E402

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
# What the pages print when they cut a value, a list or a diff, each with its way on.
CUT_MARKS = ("-cut", "Show all", "diff-too-large", "not shown")


def _trace(n: int, **fields) -> dict:
    data = {
        "id": f"big-{n}",
        "name": f"big {n}",
        "timestamp": (T0 + dt.timedelta(seconds=n)).isoformat(),
        "input": "hello",
        "output": "done",
        "steps": [],
        "metadata": {},
        "tags": [],
        "user_id": None,
        "session_id": None,
        "latency_ms": 10.0,
        "cost": None,
    }
    return data | fields


def _step(n: int, **fields) -> dict:
    step = {
        "id": f"s{n}",
        "parent_id": f"s{n - n % 10}" if n % 10 else None,
        "type": "tool",
        "name": f"step {n}",
        "input": {"n": n},
        "output": {"ok": "yes " * 5},
        "error": None,
        "model": None,
        "usage": None,
        "start_time": None,
        "end_time": None,
        "metadata": {},
    }
    return step | fields


def _code(lines: int, seed: int) -> str:
    rng = random.Random(seed)
    body = "".join(
        f"    x_{i} = len(str(trace.get('output'))) + {rng.randint(0, 10**6)}\n"
        for i in range(lines)
    )
    return f"def eval_fn(trace):\n{body}    return True, 'ok'\n"


def build() -> dict:
    """Load the workspace; return its ids and a logged-in owner's session cookie."""
    from django.contrib.auth import get_user_model

    from evals.models import Eval, EvalExecution
    from iofold.pipeline import ingest_traces
    from traces.models import Conversation, EvalSet, EvalSetTrace, Feedback, Trace
    from workspaces.models import Membership, Workspace

    owner = get_user_model().objects.create_user(email="owner@big.test", password="x")
    workspace = Workspace.objects.create(name="Big", slug="big")
    Membership.objects.create(workspace=workspace, user=owner, role="owner")
    rng = random.Random(7)
    no_spaces = "\n".join(
        "".join(rng.choice(string.ascii_letters) for _ in range(20_000)) for _ in range(5)
    )
    call = {"id": "c1", "type": "function", "function": {"name": "put", "arguments": ""}}
    call["function"]["arguments"] = json.dumps({"blob": "a" * 1_000_000})
    reply = {"role": "assistant", "content": None, "tool_calls": [call]}
    big = {
        "5,000 steps": _trace(1, steps=[_step(i) for i in range(5000)]),
        "5 MB output": _trace(2, output="y" * 5_000_000),
        "200-level input": _trace(3),
        "20,000-char lines": _trace(4, input=no_spaces, output=no_spaces),
        "500 tags": _trace(5, tags=[f"tag-{i}" for i in range(500)]),
        "1 MB tool argument": _trace(6, steps=[_step(0, type="llm", output=reply)], output=reply),
    }
    ingest_traces(workspace=workspace, source="upload", traces=list(big.values()))
    nested = "the bottom"
    for _ in range(200):
        nested = {"level": nested}
    traces = {
        name: Trace.objects.for_workspace(workspace).get(external_id=data["id"])
        for name, data in big.items()
    }
    # Ingest refuses such nesting now; traces stored before it did are still shown.
    Trace.objects.filter(pk=traces["200-level input"].pk).update(data=_trace(3, input=nested))
    turns = [
        _trace(100 + i, session_id="long", input=f"question {i}", output=f"answer {i}")
        for i in range(2000)
    ]
    ingest_traces(workspace=workspace, source="upload", traces=turns)
    labelled = [_trace(10_000 + i, input=f"q{i}", output=f"a{i}") for i in range(10_000)]
    for start in range(0, len(labelled), 2000):
        ingest_traces(workspace=workspace, source="upload", traces=labelled[start : start + 2000])
    label_ids = list(
        Trace.objects.for_workspace(workspace)
        .filter(external_id__in=[t["id"] for t in labelled])
        .values_list("pk", flat=True)
    )
    eval_set = EvalSet.objects.create(
        workspace=workspace, name="10,000 labels", criteria="Be good.", created_by=owner
    )
    in_set = label_ids + [t.pk for t in traces.values()]
    EvalSetTrace.objects.bulk_create(
        EvalSetTrace(workspace=workspace, eval_set=eval_set, trace_id=pk) for pk in in_set
    )
    Feedback.objects.bulk_create(
        Feedback(
            workspace=workspace,
            eval_set=eval_set,
            trace_id=pk,
            user=owner,
            rating="negative" if i % 3 == 0 else "positive",
            note="N" * 10_000 if i == 0 else "",
        )
        for i, pk in enumerate(label_ids)
    )
    versions = [
        _code(3000, 1),
        _code(3000, 2),
        "def eval_fn(trace):\n    return True, '" + "q" * 50_000 + "'\n",
    ]
    evals = []
    for number, code in enumerate(versions, start=1):
        evals.append(
            Eval.objects.create(
                workspace=workspace,
                eval_set=eval_set,
                version=number,
                parent=evals[-1] if evals else None,
                code=code,
                status="active" if number == 1 else "draft",
            )
        )
    EvalExecution.objects.bulk_create(
        EvalExecution(
            workspace=workspace,
            eval=version,
            trace_id=pk,
            passed=i % 2 == 0,
            reason="r",
            duration_ms=1,
        )
        for version in evals[:2]
        for i, pk in enumerate(label_ids)
    )
    conversation = Conversation.objects.for_workspace(workspace).get(external_id="long")
    return {
        "owner": owner,
        "slug": workspace.slug,
        "traces": {name: t.pk for name, t in traces.items()},
        "eval_set": eval_set.pk,
        "evals": [e.pk for e in evals],
        "conversation": conversation.pk,
        "some_label_trace": label_ids[0],
    }


def cases(ctx: dict) -> dict[str, tuple[str, dict]]:
    """Name → (URL, headers) of every page and API answer that shows the large data."""
    w, es, (v1, v2, v3) = f"/w/{ctx['slug']}", ctx["eval_set"], ctx["evals"]
    htmx = {"HTTP_HX_REQUEST": "true"}
    out: dict[str, tuple[str, dict]] = {}
    for name, pk in ctx["traces"].items():
        out[f"trace page: {name}"] = (f"{w}/traces/{pk}/", {})
        out[f"trace page ?full=1: {name}"] = (f"{w}/traces/{pk}/?full=1", {})
        out[f"review card (htmx): {name}"] = (
            f"{w}/traces/eval-sets/{es}/review/?trace={pk}",
            htmx,
        )
        out[f"API trace: {name}"] = (f"/api/v1/traces/{pk}/", {})
    conv = ctx["conversation"]
    out |= {
        "conversation 2,000 turns": (f"{w}/traces/conversations/{conv}/", {}),
        "conversation 2,000 turns ?full=1": (f"{w}/traces/conversations/{conv}/?full=1", {}),
        "API conversation 2,000 turns": (f"/api/v1/conversations/{conv}/", {}),
        "trace list": (f"{w}/traces/", {}),
        "trace list ?q": (f"{w}/traces/?q=question+1", {}),
        "trace list ?tag": (f"{w}/traces/?tag=tag-499", {}),
        "API traces ?q": ("/api/v1/traces/?q=q99", {}),
        "eval set page (10,000 labels)": (f"{w}/traces/eval-sets/{es}/", {}),
        "API feedback": ("/api/v1/feedback/", {}),
        "version page: 3,000 lines": (f"{w}/evals/{v1}/", {}),
        "version page: one 50,000-char line": (f"{w}/evals/{v3}/", {}),
        "matrix": (f"{w}/evals/sets/{es}/matrix/", {}),
        "matrix cell: 3,000 lines (htmx)": (
            f"{w}/evals/{v1}/traces/{ctx['some_label_trace']}/",
            htmx,
        ),
        "diff 3,000 vs 3,000 lines": (f"{w}/evals/sets/{es}/diff/?a=1&b=2", {}),
        "diff 3,000 lines vs one 50,000-char line": (f"{w}/evals/sets/{es}/diff/?a=2&b=3", {}),
        "before/after (contradictions)": (f"{w}/evals/{v2}/compare/?against=1", {}),
        "API diff 3,000 vs 3,000 lines": (f"/api/v1/eval-sets/{es}/diff/?a=1&b=2", {}),
        "matrix.csv": (f"{w}/evals/sets/{es}/matrix.csv", {}),
        "export set (JSON)": (f"{w}/evals/sets/{es}/export/", {}),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per request, not warmed up")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--only", default="", help="only the requests whose name holds this")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    prefix = os.environ.get("BENCH_DB_PREFIX", "iofold_bench_big")
    db_name = f"{prefix}_{os.getpid()}_{int(time.time())}"
    result: dict = {}

    def body() -> None:
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        started = time.process_time()
        ctx = build()
        print(f"built the workspace in {time.process_time() - started:.1f} s of CPU")
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(ctx["owner"])
        print(f"{'request':<46} {'status':>6} {'bytes':>11} {'cpu ms':>8}  cut")
        client.get(f"/w/{ctx['slug']}/traces/")  # loads the templates and URLs once
        for name, (url, headers) in cases(ctx).items():
            # --quick leaves out the pages asked for whole (?full=1): seconds each.
            if args.only not in name or (args.quick and "full=1" in name):
                continue
            cpu, response = [], None
            # Beyond --quick, a first run warms up (template and URL caches), untimed.
            for _ in range(runs if args.quick else runs + 1):
                started = time.process_time()
                response = client.get(url, **headers)
                content = b"".join(response) if response.streaming else response.content
                cpu.append((time.process_time() - started) * 1000)
            cpu = cpu if args.quick else cpu[1:]
            text = content.decode("utf-8", "replace")
            row = {
                "status": response.status_code,
                "bytes": len(content),
                "cpu_ms_p50": round(statistics.median(cpu), 1),
                "cut": any(mark in text for mark in CUT_MARKS),
            }
            result[name] = row
            print(
                f"{name:<46} {row['status']:>6} {row['bytes']:>11,} {row['cpu_ms_p50']:>8}  "
                f"{'yes' if row['cut'] else '-'}"
            )

    run_as_production(db_name, body)
    print("command: python bench/big_data.py" + (" --quick" if args.quick else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
