"""Benchmark conversations: grouping at ingest, the completion sweep, the conversation page.

Ingest: the same traces go through ``iofold.pipeline.ingest_traces`` in batches of 500
(a sync's batch) twice, into two fresh workspaces: once without a session id (traces
alone, the reference) and once with one, ten turns per conversation. The batches
alternate between the two so the shared machine's load falls on both alike. The headline
is the ratio of the two ingest times (the issue's bar: at most 1.3).

Completion: one sweep marks every conversation complete (all idle), timed.

Page: one conversation of 50 turns (τ²-bench retail turns, split as tests/traces/tau2.py
does), its page requested by a logged-in member through Django's test client; p50/p95.

Run: .venv/bin/python bench/conversations.py [--quick] [--traces N] [--turns T]
(on PostgreSQL; a database named per run is created and dropped).
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._django import percentiles, run_on_scratch_database  # noqa: E402

BATCH = 500
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _trace(n: int, session: str | None, turns: int) -> dict:
    at = T0 + dt.timedelta(seconds=n)
    return {
        "id": f"t{n}",
        "name": "support turn",
        "timestamp": at.isoformat(),
        "input": {"user": f"question {n} about order {n % 977}"},
        "output": f"answer {n}: your order is on its way",
        "steps": [
            {
                "id": "a",
                "parent_id": None,
                "type": "llm",
                "name": "agent",
                "error": None,
                "usage": {"input": 300, "output": 40},
            },
            {
                "id": "b",
                "parent_id": "a",
                "type": "tool",
                "name": "lookup",
                "error": "timeout" if n % 23 == 0 else None,
            },
        ],  # fmt: skip
        "metadata": {},
        "tags": ["bench"],
        "user_id": None,
        "session_id": session,
        "latency_ms": 1200.0,
        "cost": 0.0004,
    }


def _batches(n_traces: int, turns: int, with_sessions: bool) -> list[list[dict]]:
    # Turns of one conversation arrive in order, interleaved with other conversations'
    # turns, as a live sync sees them.
    conversations = n_traces // turns
    traces = []
    for n in range(n_traces):
        session = f"s{n % conversations}" if with_sessions else None
        traces.append(_trace(n, session, turns))
    return [traces[i : i + BATCH] for i in range(0, len(traces), BATCH)]


def body(args) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from iofold.pipeline import ingest_traces
    from tests.traces import tau2
    from traces.conversations import complete_idle_conversations
    from traces.models import Conversation, Trace
    from workspaces.models import Membership, Workspace

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"(schema set up in {time.perf_counter() - started:.1f} s, not counted)")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    plain_ws = Workspace.objects.create(name="Plain", slug="plain")
    conv_ws = Workspace.objects.create(name="Chats", slug="chats")
    plain = _batches(args.traces, args.turns, with_sessions=False)
    chats = _batches(args.traces, args.turns, with_sessions=True)
    times = {"traces alone": 0.0, "with conversations": 0.0}
    for index in range(len(plain)):
        order = [("traces alone", plain_ws, plain), ("with conversations", conv_ws, chats)]
        if index % 2:
            order.reverse()
        for name, workspace, batches in order:
            started = time.perf_counter()
            ingest_traces(workspace=workspace, source="api", traces=batches[index])
            times[name] += time.perf_counter() - started
    conversations = Conversation.objects.for_workspace(conv_ws).count()
    assert Trace.objects.for_workspace(conv_ws).count() == args.traces
    assert conversations == args.traces // args.turns, conversations

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    started = time.perf_counter()
    # A day after the last turn (one a second from T0) and after the turns arrived (now):
    # every conversation is idle and settled by then.
    last = T0 + dt.timedelta(seconds=args.traces)
    completed = complete_idle_conversations(max(last, timezone.now()) + dt.timedelta(days=1))
    sweep_s = time.perf_counter() - started
    assert sum(len(ids) for ids in completed.values()) == conversations

    # The page: one conversation of 50 turns.
    record = max(tau2.load(), key=lambda r: sum(s["name"] == "user" for s in r["steps"]))
    turns = tau2.split(record, session_id="page")
    while len(turns) < args.page_turns:
        extra = tau2.split(record, session_id="page", start=tau2.START + dt.timedelta(hours=1))
        for t in extra:
            t["id"] = f"{t['id']}-{len(turns)}"
            t["timestamp"] = (
                dt.datetime.fromisoformat(t["timestamp"]) + dt.timedelta(minutes=len(turns))
            ).isoformat()
        turns += extra
    turns = turns[: args.page_turns]
    for t in turns:
        t["metadata"].pop("conversation_end", None)
    ingest_traces(workspace=conv_ws, source="upload", traces=turns)
    page = Conversation.objects.for_workspace(conv_ws).get(external_id="page")
    assert page.turn_count == args.page_turns, page.turn_count
    user = get_user_model().objects.create_user(email="b@bench.test", password="x")
    Membership.objects.create(workspace=conv_ws, user=user, role="owner")
    client = Client()
    client.force_login(user)
    url = reverse("traces:conversation_detail", kwargs={"slug": conv_ws.slug, "pk": page.pk})
    samples = []
    for run in range(args.page_runs + 3):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (response.status_code, response.get("Location"))
        assert response.content.count(b'data-testid="turn"') == (args.page_turns)
        if run >= 3:  # warm-up
            samples.append(elapsed)
    page_figures = percentiles(samples)

    ratio = times["with conversations"] / times["traces alone"]
    per_s = {k: round(args.traces / v) for k, v in times.items()}
    print(f"traces: {args.traces} in {conversations} conversations of {args.turns} turns")
    for name, seconds in times.items():
        print(f"  ingest {name:<20} {seconds:7.2f} s  ({per_s[name]} traces/s)")
    print(f"  ingest overhead ratio       {ratio:.2f}x  (bar: <= 1.3)")
    print(f"  completion sweep            {sweep_s * 1000:7.1f} ms for {conversations}")
    print(
        f"conversation page, {args.page_turns} turns, {args.page_runs} requests: "
        f"p50 {page_figures['p50_ms']} ms, p95 {page_figures['p95_ms']} ms (bar: p95 < 150)"
    )
    quick = " --quick" if args.quick else ""
    print(f"reproduce: .venv/bin/python bench/conversations.py{quick}")
    print(
        json.dumps(
            {
                "traces": args.traces,
                "conversations": conversations,
                "ingest_alone_s": round(times["traces alone"], 2),
                "ingest_with_conversations_s": round(times["with conversations"], 2),
                "ingest_ratio": round(ratio, 3),
                "completion_sweep_ms": round(sweep_s * 1000, 1),
                "page_turns": args.page_turns,
                **{f"page_{k}": v for k, v in page_figures.items()},
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 traces, 20 page requests")
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=10, help="turns per conversation")
    parser.add_argument("--page-turns", type=int, default=50)
    parser.add_argument("--page-runs", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.traces, args.page_runs = 4_000, 20
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    run_on_scratch_database(f"iofold_bench_conv_{os.getpid()}", lambda: body(args))


if __name__ == "__main__":
    main()
