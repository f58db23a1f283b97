"""The shared lifecycle of background runs: claim, heartbeat, take over, recover, fail."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integrations import services
from integrations.models import SyncRun
from iofold.lib import runs
from tests.conftest import dead_owner, wait_for


def test_this_process_is_alive_and_an_exited_one_is_gone():
    assert not runs.owner_is_gone(runs.current_owner())
    assert runs.owner_is_gone(dead_owner())


def test_a_reused_pid_is_not_taken_for_the_old_owner():
    host, pid, start, boot, namespace = runs.current_owner().split(":")
    earlier = f"{host}:{pid}:{int(start) - 1}:{boot}:{namespace}"
    assert runs.owner_is_gone(earlier)


def test_an_owner_on_another_machine_is_left_to_the_heartbeat():
    host, pid, start, _boot, namespace = dead_owner().split(":")
    assert not runs.owner_is_gone(f"other:{pid}:{start}:0123456789ab:{namespace}")
    assert not runs.owner_is_gone("")


@pytest.fixture
def sync_run(db, workspace):
    integration = services.create_integration(
        workspace=workspace, name="x", host="http://x.test", public_key="pk", secret_key="sk"
    )
    return SyncRun.objects.create(workspace=workspace, integration=integration)


def test_a_live_claim_is_not_taken_over(sync_run):
    assert SyncRun.objects.claim(sync_run.pk) == runs.Claim(taken_over=False)
    assert SyncRun.objects.claim(sync_run.pk) is None
    sync_run.refresh_from_db()
    assert sync_run.owner == runs.current_owner() and sync_run.takeovers == 0


def test_a_run_whose_process_died_is_taken_over_at_once(sync_run):
    """Its last heartbeat is a second old: the dead owner, not a timeout, decides."""
    SyncRun.objects.filter(pk=sync_run.pk).update(
        status="running", owner=dead_owner(), heartbeat_at=timezone.now()
    )

    assert SyncRun.objects.claim(sync_run.pk) == runs.Claim(taken_over=True)
    sync_run.refresh_from_db()
    assert sync_run.owner == runs.current_owner() and sync_run.takeovers == 1


def test_a_run_elsewhere_is_taken_over_after_a_few_missed_heartbeats(sync_run, settings):
    settings.IOFOLD_RUN_STALE_SECONDS = 30
    elsewhere = "other-host:1:1:0123456789ab:1"
    SyncRun.objects.filter(pk=sync_run.pk).update(
        status="running", owner=elsewhere, heartbeat_at=timezone.now() - timedelta(seconds=5)
    )
    assert SyncRun.objects.claim(sync_run.pk) is None

    SyncRun.objects.filter(pk=sync_run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=31)
    )
    assert SyncRun.objects.claim(sync_run.pk) == runs.Claim(taken_over=True)


def test_a_run_that_keeps_killing_its_worker_is_failed(sync_run):
    SyncRun.objects.filter(pk=sync_run.pk).update(
        status="running", owner=dead_owner(), takeovers=runs.MAX_TAKEOVERS
    )

    assert SyncRun.objects.claim(sync_run.pk) is None
    sync_run.refresh_from_db()
    assert sync_run.status == "failed" and "stopped 4 times" in sync_run.error


def test_recovery_requeues_dead_runs_and_leaves_live_ones(
    db, workspace, django_capture_on_commit_callbacks
):
    make = services.create_integration
    dead, live, queued = (
        SyncRun.objects.create(
            workspace=workspace,
            integration=make(
                workspace=workspace,
                name=name,
                host="http://x.test",
                public_key="pk",
                secret_key="sk",
            ),
        )
        for name in ("dead", "live", "queued")
    )
    SyncRun.objects.filter(pk=dead.pk).update(
        status="running", owner=dead_owner(), heartbeat_at=timezone.now()
    )
    SyncRun.objects.filter(pk=live.pk).update(
        status="running", owner=runs.current_owner(), heartbeat_at=timezone.now()
    )
    enqueued = []

    with django_capture_on_commit_callbacks(execute=True):
        assert SyncRun.objects.recover(enqueue=enqueued.append, resumed=True) == 1
    assert [r.pk for r in enqueued] == [dead.pk]
    # At a worker's start-up, queued runs go again too: their messages may be lost.
    with django_capture_on_commit_callbacks(execute=True):
        assert SyncRun.objects.recover(enqueue=enqueued.append, include_queued=True) == 2
    assert sorted(r.pk for r in enqueued[1:]) == sorted([dead.pk, queued.pk])
    dead.refresh_from_db()
    assert (dead.status, dead.owner, dead.takeovers, dead.resumed) == ("queued", "", 1, True)
    live.refresh_from_db()
    assert live.status == "running"


def test_sync_now_hands_a_dead_workers_run_to_the_next_worker(
    db, workspace, monkeypatch, django_capture_on_commit_callbacks
):
    integration = services.create_integration(
        workspace=workspace, name="x", host="http://x.test", public_key="pk", secret_key="sk"
    )
    sent = []
    monkeypatch.setattr("integrations.tasks.sync_integration_task.delay", sent.append)
    stuck = services.start_sync(integration=integration)
    SyncRun.objects.filter(pk=stuck.pk).update(
        status="running", owner=dead_owner(), heartbeat_at=timezone.now()
    )

    with django_capture_on_commit_callbacks(execute=True):
        run = services.start_sync(integration=integration)

    assert run.pk == stuck.pk and run.status == "queued"
    assert sent == [stuck.pk]


def test_the_heartbeat_moves_while_the_run_works(transactional_db, workspace, settings):
    settings.IOFOLD_RUN_HEARTBEAT_SECONDS = 0.05
    integration = services.create_integration(
        workspace=workspace, name="x", host="http://x.test", public_key="pk", secret_key="sk"
    )
    run = SyncRun.objects.create(workspace=workspace, integration=integration)
    SyncRun.objects.claim(run.pk)
    run.refresh_from_db()
    claimed_at = run.heartbeat_at

    with runs.keep_alive(run) as heartbeat:
        wait_for(
            lambda: SyncRun.objects.get(pk=run.pk).heartbeat_at > claimed_at,
            timeout=10,
            message="no heartbeat",
        )
        SyncRun.objects.filter(pk=run.pk).update(status="succeeded")
        wait_for(lambda: heartbeat.lost, timeout=10, message="a finished run kept beating")
    assert not heartbeat.is_alive()


def test_a_run_put_back_at_start_up_is_enqueued_once(sync_run, django_capture_on_commit_callbacks):
    SyncRun.objects.filter(pk=sync_run.pk).update(
        status="running", owner=dead_owner(), heartbeat_at=timezone.now()
    )
    enqueued = []

    with django_capture_on_commit_callbacks(execute=True):
        assert SyncRun.objects.recover(enqueue=enqueued.append, include_queued=True) == 1
    assert [r.pk for r in enqueued] == [sync_run.pk]


def test_a_queued_run_whose_message_was_lost_is_enqueued_again_once_in_a_while(
    sync_run, django_capture_on_commit_callbacks
):
    """The broker was down when it was sent: the sweep sends it again, not every minute."""
    SyncRun.objects.filter(pk=sync_run.pk).update(
        created_at=timezone.now() - runs.REQUEUE_AFTER - timedelta(seconds=1)
    )
    enqueued = []

    with django_capture_on_commit_callbacks(execute=True):
        assert SyncRun.objects.recover(enqueue=enqueued.append) == 1
        assert SyncRun.objects.recover(enqueue=enqueued.append) == 0  # the next sweep
    assert [r.pk for r in enqueued] == [sync_run.pk]
    sync_run.refresh_from_db()
    assert sync_run.status == "queued"
