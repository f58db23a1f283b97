import gc
import weakref

from celery.signals import worker_init, worker_process_init

from iofold import celery as iofold_celery
from iofold.lib import heap
from iofold.lib.heap import collector_paused, freeze_startup_heap


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


def test_a_paused_collector_is_back_on_after_the_last_of_overlapping_pauses():
    assert gc.isenabled()
    first = collector_paused()
    first.__enter__()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the first pause still runs
    first.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_turned_off_by_someone_else_off():
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_cycles_made_while_paused_are_freed_once_the_young_generation_has_grown(monkeypatch):
    class Node:
        pass

    monkeypatch.setattr(heap, "GROWTH_LIMIT", 1_000)
    with collector_paused():
        gc.collect()
        probe = Node()
        probe.self = probe
        freed = weakref.ref(probe)
        del probe
        heap.collect_if_grown()
        assert freed() is not None  # below the limit: left for later
        keep = [Node() for _ in range(2_000)]  # noqa: F841 (alive: the count grows)
        heap.collect_if_grown()
        assert freed() is None
