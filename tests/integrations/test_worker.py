"""One sync end to end through the real broker and a real Celery worker process."""

from datetime import timedelta

import pytest

from integrations import services
from integrations.models import SyncRun
from tests.conftest import wait_for
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY
from traces.models import Trace

pytestmark = pytest.mark.worker


def test_sync_runs_on_the_worker(celery_worker_process, transactional_db, workspace, fake_langfuse):
    fake = fake_langfuse(traces=25)
    integration = services.create_integration(
        workspace=workspace, name="lf", host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY
    )

    run = services.start_sync(integration=integration)  # enqueued on commit (autocommit here)

    def finished():
        run.refresh_from_db()
        return run.is_final

    wait_for(finished, timeout=60, message="sync did not finish on the worker")
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.created_count == 25
    assert Trace.objects.for_workspace(workspace).filter(integration=integration).count() == 25


def test_a_sync_whose_worker_was_killed_finishes_on_the_next_worker(
    celery_worker_process, transactional_db, workspace, fake_langfuse
):
    """The next worker takes the run over at once: its start-up finds the dead worker's run.

    The killed worker's message is gone (the file-system broker deleted it on receipt) or
    hidden for hours (Redis), and the run's last heartbeat is seconds old; only knowing
    that its worker is gone lets the new one finish it within the wait below.
    """
    # Six-hour spacing spreads the traces over several week-long windows: several pages.
    fake = fake_langfuse(traces=100, observations=2, spacing=timedelta(hours=6))
    fake.page_delay = 1.0  # slow pages, so the kill lands between two of them
    integration = services.create_integration(
        workspace=workspace, name="lf", host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY
    )
    run = services.start_sync(integration=integration)

    def some_pages_done():
        run.refresh_from_db()
        return run.status == SyncRun.Status.RUNNING and run.pages >= 1

    wait_for(some_pages_done, timeout=60, message="sync did not start on the worker")
    celery_worker_process.kill()
    run.refresh_from_db()
    assert run.status == SyncRun.Status.RUNNING  # a killed worker cannot clean up
    assert 0 < run.created_count < 100

    fake.page_delay = 0
    celery_worker_process.start()

    def finished():
        run.refresh_from_db()
        return run.is_final

    wait_for(finished, timeout=60, message="the new worker did not finish the killed sync")
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.takeovers == 1 and run.resumed
    assert run.created_count == 100  # counts are committed with their page
    assert run.updated_count == 0
    assert Trace.objects.for_workspace(workspace).filter(integration=integration).count() == 100
    assert SyncRun.objects.filter(integration=integration).count() == 1
