"""Two requests starting the same generation at the same moment get one generation."""

import threading

import pytest
from django.db import connection, connections, transaction

from evals.generation.refinement import start_refinement
from evals.generation.services import start_generation
from evals.models import Generation
from tests.evals.builders import labelled_set, make_eval

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two connections at once: PostgreSQL"
)


def _second_request(start) -> tuple[threading.Thread, list]:
    """Start ``start()`` on another connection, as a second tab's request would."""
    got = []

    def request():
        try:
            got.append(start())
        finally:
            connections.close_all()

    thread = threading.Thread(target=request)
    thread.start()
    return thread, got


@pytest.mark.parametrize("what", ["generation", "refinement"])
def test_two_clicks_at_once_start_one_generation(transactional_db, workspace, what):
    """Before: each request checked for an unfinished generation before either had stored
    one, and both were queued (two model bills, two versions)."""
    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    if what == "generation":
        start = lambda: start_generation(eval_set=eval_set, enqueue=False)  # noqa: E731
    else:
        parent = make_eval(eval_set, version=1)
        start = lambda: start_refinement(eval=parent, enqueue=False)  # noqa: E731

    with transaction.atomic():  # the first request, not committed yet
        first = start()
        thread, got = _second_request(start)
        # The second waits for the first to commit; without the lock it finished at once.
        thread.join(timeout=1)
    thread.join(timeout=30)

    assert got == [first]
    assert Generation.objects.filter(eval_set=eval_set).count() == 1
