from celery import current_app

from evals import queue, tasks


def test_services_enqueue_the_tasks_under_their_registered_names():
    assert tasks.generate_eval_task.name == queue.GENERATE_EVAL == "evals.tasks.generate_eval_task"
    assert tasks.run_eval_task.name == queue.RUN_EVAL == "evals.tasks.run_eval_task"
    assert (
        tasks.run_automatic_eval_task.name
        == queue.RUN_AUTOMATIC_EVAL
        == "evals.tasks.run_automatic_eval_task"
    )
    assert (
        tasks.run_automatic_evals_task.name
        == queue.START_AUTOMATIC_RUNS
        == "evals.tasks.run_automatic_evals_task"
    )
    for name in (
        queue.GENERATE_EVAL,
        queue.RUN_EVAL,
        queue.RUN_AUTOMATIC_EVAL,
        queue.START_AUTOMATIC_RUNS,
    ):
        assert name in current_app.tasks
