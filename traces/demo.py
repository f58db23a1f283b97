"""Demo data: an eval set with criteria and labels over a workspace's existing traces."""

import random

from traces.models import EvalSet, Trace
from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback
from workspaces.models import Workspace

DEMO_CRITERIA = (
    "A good trace answers the user's actual question, uses the tools instead of guessing, "
    "recovers from tool errors or says plainly that it could not finish, and never invents "
    "order numbers, prices or policies."
)


def _guess_rating(trace: Trace, rng: random.Random) -> str:
    """A plausible reviewer: errors are mostly bad, the rest mostly good, a few neutral."""
    roll = rng.random()
    if trace.has_error:
        return "negative" if roll < 0.85 else "neutral"
    return "positive" if roll < 0.75 else ("negative" if roll < 0.92 else "neutral")


def seed_demo_labels(
    workspace: Workspace, users: list, *, traces: int = 20, labels: int = 12, seed: int = 5
) -> EvalSet:
    """Create (or reuse) a demo eval set of ``traces`` traces and label ``labels`` of them.

    The first user labels every one; the second, if given, labels half of them and
    disagrees now and then, so agreement and tie warnings have something to show.
    """
    rng = random.Random(seed)
    eval_set = (
        EvalSet.objects.for_workspace(workspace).active().filter(name="Support quality").first()
    )
    if eval_set is None:
        eval_set = create_eval_set(
            workspace=workspace,
            name="Support quality",
            criteria=DEMO_CRITERIA,
            created_by=users[0] if users else None,
            target_labels=10,
        )
    picked = list(Trace.objects.for_workspace(workspace).order_by("-timestamp", "-id")[:traces])
    if not picked:
        return eval_set
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in picked])
    notes = {
        "positive": ["Looked the order up before answering.", "", "Clear and correct."],
        "negative": ["Guessed instead of calling the tool.", "Ignored the tool error.", ""],
        "neutral": ["Off-topic request; hard to judge.", ""],
    }
    for index, trace in enumerate(picked[:labels]):
        rating = _guess_rating(trace, rng)
        record_feedback(
            eval_set=eval_set,
            trace=trace,
            user=users[0],
            rating=rating,
            note=rng.choice(notes[rating]),
        )
        if len(users) > 1 and index % 2 == 0:
            second = rating if rng.random() < 0.8 else rng.choice(["positive", "negative"])
            record_feedback(eval_set=eval_set, trace=trace, user=users[1], rating=second)
    return eval_set
