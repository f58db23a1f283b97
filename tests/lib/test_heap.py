import gc

from celery.signals import worker_init, worker_process_init

from iofold import celery as iofold_celery
from iofold.lib.heap import freeze_startup_heap


def test_the_startup_heap_is_frozen_and_later_garbage_still_collected():
    class Node:
        pass

    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        cycle = Node()
        cycle.self = cycle
        del cycle
        assert gc.collect() >= 1  # made after the freeze: still found and freed
    finally:
        gc.unfreeze()


def test_worker_processes_freeze_their_startup_heap():
    # Prefork children after the fork, and the worker itself (solo or threads pools).
    assert iofold_celery._prepare_pool_process in [r() for _, r in worker_process_init.receivers]
    receivers = [r() for _, r in worker_init.receivers]
    assert iofold_celery._prepare_worker in receivers
