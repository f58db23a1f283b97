"""Enqueue evals' Celery tasks from services, by the tasks' registered names.

``evals.tasks`` imports the services its tasks call, so a service cannot import the
tasks back without closing an import cycle. Services enqueue through these functions
instead: the task is found in Celery's registry by the name it is registered under
(``evals.tasks`` declares each with ``name=`` from here), and ``EvalsConfig.ready``
imports ``evals.tasks`` so the registry holds them in every process.
"""

from celery import current_app

# The names are also what the routes (CELERY_TASK_ROUTES) and any beat rows refer to:
# keep them as they are.
GENERATE_EVAL = "evals.tasks.generate_eval_task"
RUN_EVAL = "evals.tasks.run_eval_task"
RUN_AUTOMATIC_EVAL = "evals.tasks.run_automatic_eval_task"


def enqueue_generation(generation_id: int) -> None:
    """Send a generation (or refinement) to the ``generate`` queue."""
    current_app.tasks[GENERATE_EVAL].delay(generation_id)


def enqueue_run(run_id: int, *, automatic: bool = False) -> None:
    """Send an eval run to the ``execute`` queue; an automatic one pushes scores after."""
    current_app.tasks[RUN_AUTOMATIC_EVAL if automatic else RUN_EVAL].delay(run_id)
