"""Enqueue a Celery task by the name it is registered under.

An app's tasks import the services they call, so a service that enqueues one of them
cannot import it back without closing an import cycle (tests/test_import_boundaries.py
forbids cycles inside an app). The service enqueues by name through ``enqueue`` instead;
the name is also what the routes and beat rows refer to, so it never changes.
"""

from celery import Task, current_app


def registered_task(name: str) -> Task:
    """Return the task registered under ``name``."""
    tasks = current_app.tasks
    if name not in tasks:
        # Outside a worker, the apps' tasks modules are imported only when first needed.
        current_app.loader.import_default_modules()
    return tasks[name]


def enqueue(name: str, *args) -> None:
    """Send the task registered under ``name`` with ``args``, as ``task.delay`` would."""
    registered_task(name).delay(*args)
