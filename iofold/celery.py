"""The Celery app: queues ``sync``, ``generate`` and ``execute``, configured from settings."""

import logging
import os

from celery import Celery
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)
from kombu import Queue

from iofold.lib.heap import freeze_startup_heap
from iofold.lib.metrics import connect_task_signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iofold.settings")

logger = logging.getLogger(__name__)

app = Celery("iofold")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "sync", "generate", "execute")]
app.autodiscover_tasks()
connect_task_signals()


@worker_init.connect
def _prepare_worker(**kwargs) -> None:
    _serve_worker_metrics()
    _warm_up()
    # After the warm-up, so what it built is frozen too. A solo or threads pool runs
    # tasks in this process; prefork children inherit the frozen heap.
    freeze_startup_heap()


@worker_process_init.connect
def _prepare_pool_process(**kwargs) -> None:
    _warm_up()  # a forked pool process starts without the parent's broker connections
    # What it set up after the fork joins what it inherited frozen.
    freeze_startup_heap()


def _warm_up() -> None:
    """Pay a fresh worker's first-task costs before it takes a task.

    The sandbox's start-up (the jail's check and compiled harness, about 0.2 s; done
    before the pool's processes fork, they inherit it) and a broker connection to send
    tasks on (a run's start task sends its chunks): a worker that has run any task has
    both already, a fresh one made its first run's traces wait for them.
    """
    # Imported here: this module loads with the settings, before the apps are ready.
    from evals.sandboxing import prepare_sandbox

    prepare_sandbox()
    try:
        with app.producer_or_acquire() as producer:
            # One try, bounded: a pool process has a few seconds to start.
            producer.connection.ensure_connection(max_retries=1, interval_start=0, timeout=2)
    except Exception as exc:  # the first task will connect, or say why it cannot
        logger.warning("broker not reachable at worker start: %s", exc)


def _serve_worker_metrics() -> None:
    """Serve this worker's metrics (all its pool processes) when a port is configured."""
    from django.conf import settings
    from prometheus_client import start_http_server

    from iofold.lib import metrics

    port = settings.IOFOLD_WORKER_METRICS_PORT
    if not port:
        return
    if not metrics.multiprocess_dir():
        logger.warning(
            "IOFOLD_WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: only the "
            "worker's main process is counted, not the pool processes that run the tasks"
        )
    start_http_server(port, registry=metrics.scrape_registry())


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(sender=None, **kwargs) -> None:
    """Close the task thread's database connections that are too old or unusable.

    What Django does around every request (``CELERY_DB_REUSE_MAX`` in settings): a
    connection is kept for the next task until ``DATABASE_CONN_MAX_AGE`` has passed. Not
    around a task run eagerly, whose caller's connection (and transaction) it is.
    """
    from django.db import close_old_connections

    if not getattr(getattr(sender, "request", None), "is_eager", False):
        close_old_connections()


@worker_ready.connect
def _recover_runs(sender=None, **kwargs) -> None:
    """Enqueue again the runs a killed worker left behind, as this worker starts.

    The file-system broker deletes a message when a worker receives it and Redis hides an
    unacknowledged one for hours, so the run rows, not the broker, say what is unfinished.
    """
    # Imported here: this module loads with the settings, before the apps are ready.
    from django.db import connections

    from iofold.reaper import recover_at_start_up

    recover_at_start_up()
    if not _runs_tasks_in_this_thread(sender):
        connections.close_all()  # a pool's processes or threads open their own


def _runs_tasks_in_this_thread(consumer) -> bool:
    """Tell whether the worker's tasks run in this thread (the solo pool).

    Its connection, opened by the recovery, then serves the first task as it would any
    later one (``_close_old_connections``) instead of a new one making it wait.
    """
    pool = getattr(getattr(consumer, "controller", None), "pool_cls", None)
    return getattr(pool, "__module__", "") == "celery.concurrency.solo"
