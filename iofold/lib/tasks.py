"""Enqueue a Celery task by the name it is registered under.

An app's tasks import the services they call, so a service that enqueues one of them
cannot import it back without closing an import cycle (tests/test_import_boundaries.py
forbids cycles inside an app). The service enqueues by name through ``enqueue`` instead;
the name is also what the routes and beat rows refer to, so it never changes.
"""

import logging
import threading

from celery import Task, current_app

logger = logging.getLogger(__name__)

# Importing the tasks modules takes a while; a second thread of a threaded web worker
# asking meanwhile would find the registry half filled (Celery marks the import done when
# it starts), so the first import and every lookup during it are serialised.
_import_lock = threading.Lock()


def registered_task(name: str) -> Task:
    """Return the task registered under ``name``."""
    tasks = current_app.tasks
    if name not in tasks:
        # Outside a worker, the apps' tasks modules are imported only when first needed.
        with _import_lock:
            if name not in tasks:
                current_app.loader.import_default_modules()
    return tasks[name]


def enqueue(name: str, *args, priority: int | None = None) -> None:
    """Send the task registered under ``name`` with ``args``, as ``task.delay`` would.

    ``priority``: on Redis, 0 (the default) is served first and 9 last (kombu's steps).
    """
    task = registered_task(name)
    if priority is None:
        task.delay(*args)
    else:
        task.apply_async(args, priority=priority)


# Told when a run's task stops on an error it did not expect: the details stay in the logs.
INTERNAL_ERROR = (
    "The worker stopped on an internal error; try again, or ask an operator to check the logs."
)


class RunTask(Task):
    """Base of a task that carries out one background run (``iofold.lib.runs``), its id first.

    Declared with ``run_model=TheRunModel``. An error the task raises fails the run
    at once with a message the user can act on. Left running, the run showed a spinner
    until the reaper took it over as if its worker had died, ran it into the same error,
    and after a few rounds failed it as a run whose worker kept dying.
    """

    abstract = True
    run_model: type | None = None

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        run_id = args[0] if args else next(iter(kwargs.values()), None)
        if run_id is None:
            return
        if self.run_model._default_manager.filter(pk=run_id).fail(INTERNAL_ERROR):
            logger.warning(
                "run failed on an error model=%s run=%s", self.run_model.__name__, run_id
            )
