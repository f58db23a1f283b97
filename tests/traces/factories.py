import datetime as dt
from contextlib import contextmanager

import factory
from django.utils import timezone

from tests.factories import WorkspaceFactory
from traces.models import EvalSet, Trace

BASE_TIME = timezone.make_aware(dt.datetime(2026, 3, 1, 12, 0))


@contextmanager
def arriving_live(workspace, traces):
    """Store ``traces`` as if they arrived as their latest began (live traffic, not a
    backfill): a conversation completes once none arrived for the idle time either, and
    the tests' clock is their turns' times."""
    from traces.models import Conversation

    since = timezone.now()
    yield
    when = max(dt.datetime.fromisoformat(t["timestamp"]) for t in traces)
    Conversation.objects.for_workspace(workspace).filter(changed_at__gte=since).update(
        changed_at=when
    )


def trace_data(n: int, *, output: str = "Your refund is on its way.", error: str | None = None):
    steps = [
        {
            "id": f"s{n}-1",
            "parent_id": None,
            "type": "agent",
            "name": "support-agent",
            "input": {"question": f"Where is order {n}?"},
            "output": output,
            "error": None,
            "model": None,
            "usage": None,
            "start_time": "2026-03-01T12:00:00+00:00",
            "end_time": "2026-03-01T12:00:02+00:00",
            "metadata": {},
        },
        {
            "id": f"s{n}-2",
            "parent_id": f"s{n}-1",
            "type": "tool",
            "name": "lookup_order",
            "input": {"order": n},
            "output": {"status": "shipped"},
            "error": error,
            "model": None,
            "usage": None,
            "start_time": None,
            "end_time": None,
            "metadata": {},
        },
        {
            "id": f"s{n}-3",
            "parent_id": f"s{n}-1",
            "type": "llm",
            "name": "answer",
            "input": [{"role": "user", "content": "hi"}],
            "output": output,
            "error": None,
            "model": "gpt-4o-mini",
            "usage": {"input": 120, "output": 30},
            "start_time": "2026-03-01T12:00:01+00:00",
            "end_time": "2026-03-01T12:00:01.500000+00:00",
            "metadata": {},
        },
    ]
    return {
        "id": f"t{n}",
        "name": "support",
        "timestamp": "2026-03-01T12:00:00+00:00",
        "input": {"question": f"Where is order {n}?"},
        "output": output,
        "steps": steps,
        "metadata": {"region": "eu"},
        "tags": ["support"],
        "user_id": "u1",
        "session_id": None,
        "latency_ms": 2000.0,
        "cost": 0.001,
    }


class TraceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trace

    workspace = factory.SubFactory(WorkspaceFactory)
    source = Trace.Source.UPLOAD
    source_key = "upload"
    external_id = factory.Sequence(lambda n: f"trace-{n}")
    name = "support"
    timestamp = factory.Sequence(lambda n: BASE_TIME + dt.timedelta(minutes=n))
    data = factory.Sequence(trace_data)
    search_text = factory.LazyAttribute(lambda o: f"{o.data['input']} {o.data['output']}")
    tags = factory.LazyFunction(lambda: ["support"])
    has_error = False
    step_count = 3
    tool_call_count = 1
    latency_ms = 2000.0
    content_hash = factory.Sequence(lambda n: f"{n:064d}")


class EvalSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EvalSet

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Eval set {n}")
    criteria = "The agent answers the question and uses the order tools."
    source_kind = EvalSet.SourceKind.MANUAL
