from types import SimpleNamespace

import pytest
from celery.concurrency import prefork, solo, thread

from evals.tasks import push_pending_scores_task
from iofold import celery as iofold_celery
from tests.factories import WorkspaceFactory
from workspaces.models import Workspace


@pytest.mark.django_db
def test_a_task_run_in_the_callers_transaction_leaves_it_usable():
    # The test runs in a transaction, as a caller of an eager task may: closing the
    # connection around the task would break every query after it.
    workspace = WorkspaceFactory()

    push_pending_scores_task.apply()

    assert Workspace.objects.filter(pk=workspace.pk).exists()


@pytest.mark.parametrize(
    ("pool", "keeps"),
    [(solo.TaskPool, True), (prefork.TaskPool, False), (thread.TaskPool, False)],
)
def test_only_a_worker_running_tasks_itself_keeps_its_start_up_connection(pool, keeps):
    consumer = SimpleNamespace(controller=SimpleNamespace(pool_cls=pool))

    assert iofold_celery._runs_tasks_in_this_thread(consumer) is keeps
