"""One sync end to end through the real broker and a real Celery worker process."""

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
