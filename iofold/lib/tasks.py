"""Enqueue a Celery task by the name it is registered under.

An app's tasks import the services they call, so a service that enqueues one of them
cannot import it back without closing an import cycle (tests/test_import_boundaries.py
forbids cycles inside an app). The service enqueues by name through ``enqueue`` instead;
the name is also what the routes and beat rows refer to, so it never changes.
"""

import threading

from celery import Task, current_app

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


def enqueue(name: str, *args) -> None:
    """Send the task registered under ``name`` with ``args``, as ``task.delay`` would."""
    registered_task(name).delay(*args)
