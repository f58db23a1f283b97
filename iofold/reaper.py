"""The one reaper of background runs: sync runs, uploads, score imports, deletions, generations
and eval runs.

Each app that carries out work as background runs (``iofold.lib.runs``) offers two
functions for its run model: *recover* enqueues again the runs whose worker died, and
*reap* fails the runs no worker has touched for long. This module lists them, upstream
first, and is the one place that calls them: when a worker starts
(``iofold.celery``) and every minute from beat (``reap_stale_runs_task``, a row that
``setup_periodic_tasks`` keeps). A new kind of run joins by adding a line to each list.

It lives in ``iofold/`` because it imports every app, which an app may not do.
"""

import logging

from celery import shared_task
from django.core.cache import cache

from evals.execution.chunks import reap_split_runs, recover_chunks
from evals.execution.runs import reap_stale_runs as reap_stale_eval_runs
from evals.execution.runs import recover_eval_runs
from evals.generation.services import reap_stale_generations, recover_generations
from integrations.services import reap_stale_runs as reap_stale_sync_runs
from integrations.services import recover_sync_runs
from integrations.uploads import reap_stale_uploads, recover_uploads
from traces.deletions import reap_stale_deletions, recover_deletions
from traces.label_import import reap_stale_score_imports, recover_score_imports

logger = logging.getLogger(__name__)

RECOVER = (
    recover_sync_runs,
    recover_uploads,
    recover_score_imports,
    recover_deletions,
    recover_generations,
    recover_eval_runs,
    recover_chunks,
)
REAP = (
    reap_stale_sync_runs,
    reap_stale_uploads,
    reap_stale_score_imports,
    reap_stale_deletions,
    reap_stale_generations,
    reap_stale_eval_runs,
    reap_split_runs,
)
LOCK = "iofold:reap-stale-runs"


def recover_at_start_up() -> None:
    """Enqueue again every run a killed worker left behind, queued ones included."""
    for recover in RECOVER:
        try:
            recover(include_queued=True)
        except Exception:
            # A worker that cannot recover now still works; the beat sweep tries again.
            logger.exception("recovery at start-up failed step=%s", recover.__name__)


@shared_task
def reap_stale_runs_task() -> int:
    """Enqueue again the runs whose worker died; fail those no worker touched for long."""
    # One sweep at a time; the lock expires on its own if the worker holding it dies.
    if not cache.add(LOCK, "1", timeout=300):
        return 0
    try:
        recovered = sum(recover() for recover in RECOVER)
        return recovered + sum(reap() for reap in REAP)
    finally:
        cache.delete(LOCK)
