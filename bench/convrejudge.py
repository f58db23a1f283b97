"""Benchmark claiming conversation judgements: what starting the automatic runs costs.

N conversations of T turns are stored and completed (one sweep), then a conversation
eval's automatic runs are started over all their anchors three times, as notifications
bring them: the first start claims every conversation (fingerprints each one's content,
writes the claims, starts one run); the second finds them claimed (a repeated
notification); the third comes after every conversation completed again with its content
unchanged (fingerprints, compares, starts nothing). Nothing is executed.

Figures: SQL queries and Python function calls (cProfile; a stand-in for CPU work that the
machine's load does not move) per start, and wall time (noisy on a shared machine).

Run: .venv/bin/python bench/convrejudge.py [--quick] [--conversations N] [--turns T]
(on PostgreSQL; a database named per run is created and dropped).
"""

import argparse
import cProfile
import datetime as dt
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._django import run_on_scratch_database  # noqa: E402

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
BATCH = 500


def _turn(conversation: int, n: int) -> dict:
    return {
        "id": f"c{conversation}-t{n}",
        "name": "support turn",
        "timestamp": (T0 + dt.timedelta(minutes=conversation, seconds=n)).isoformat(),
        "input": {"user": f"question {n} about order {conversation}"},
        "output": f"answer {n}: your order is on its way",
        "steps": [],
        "metadata": {},
        "tags": [],
        "user_id": None,
        "session_id": f"s{conversation}",
        "latency_ms": 900.0,
        "cost": None,
    }


def _measure(call):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    profile = cProfile.Profile()
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        profile.enable()
        result = call()
        profile.disable()
        elapsed = time.perf_counter() - started
    calls = pstats.Stats(profile).total_calls
    return result, {"queries": len(queries), "calls": calls, "ms": round(elapsed * 1000, 1)}


def body(args) -> None:
    from django.core.management import call_command
    from django.db.models import F
    from django.utils import timezone

    from evals.execution.continuous import start_automatic_runs
    from evals.models import ConversationJudgement
    from iofold.pipeline import ingest_traces
    from tests.evals.builders import active_conversation_eval
    from traces.conversations import complete_idle_conversations
    from traces.models import Conversation
    from workspaces.models import Workspace

    call_command("migrate", verbosity=0)
    workspace = Workspace.objects.create(name="bench", slug="bench")
    active_conversation_eval(
        workspace, code="def eval_fn(c):\n    return True, 'ok'\n", name="chats", criteria="ok"
    )
    traces = [_turn(c, n) for c in range(args.conversations) for n in range(args.turns)]
    for start in range(0, len(traces), BATCH):
        ingest_traces(workspace=workspace, source="upload", traces=traces[start : start + BATCH])
    complete_idle_conversations(timezone.now() + dt.timedelta(days=1))
    conversations = Conversation.objects.for_workspace(workspace)
    anchors = list(conversations.values_list("anchor_id", flat=True))
    assert len(anchors) == args.conversations

    def start():
        return start_automatic_runs(workspace_id=workspace.pk, trace_ids=anchors, enqueue=False)

    runs, first = _measure(start)
    assert len(runs) == 1 and ConversationJudgement.objects.count() == args.conversations
    runs, again = _measure(start)
    assert runs == []
    conversations.update(completion_count=F("completion_count") + 1)  # completed again
    runs, unchanged = _measure(start)
    assert runs == [] and ConversationJudgement.objects.count() == args.conversations

    figures = {"first start": first, "repeated": again, "unchanged content": unchanged}
    print(f"{args.conversations} conversations of {args.turns} turns, one conversation eval")
    for name, f in figures.items():
        print(f"  {name:<18} {f['queries']:6d} queries {f['calls']:9d} calls {f['ms']:9.1f} ms")
    given = f" --conversations {args.conversations} --turns {args.turns}"
    given = " --quick" if args.quick else given
    print(f"reproduce: .venv/bin/python bench/convrejudge.py{given}")
    print(
        json.dumps(
            {
                "conversations": args.conversations,
                "turns": args.turns,
                **{
                    f"{name.replace(' ', '_')}_{key}": value
                    for name, f in figures.items()
                    for key, value in f.items()
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 conversations")
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--turns", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.conversations = 200
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    run_on_scratch_database(f"iofold_bench_convrejudge_{os.getpid()}", lambda: body(args))


if __name__ == "__main__":
    main()
