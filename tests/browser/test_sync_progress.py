"""The integration page once a sync it watched has finished."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from integrations import services
from integrations.models import Integration, SyncRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _integration(workspace) -> Integration:
    return services.create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key="pk-lf-x",
        secret_key="sk-lf-x",
    )


def test_a_finished_sync_updates_the_status_and_the_history(logged_in_page, owner, workspace):
    """The progress box polls the run; when it ends, the badge, "Synced up to" and the
    history say so too, not "not synced yet" beside "Done"."""
    integration = _integration(workspace)
    run = SyncRun.objects.create(workspace=workspace, integration=integration)
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/integrations/{integration.pk}/")
    title = page.get_by_role("heading", level=1)
    expect(title).to_contain_text("not synced yet")
    expect(page.get_by_text("Queued: waiting for a worker")).to_be_visible()

    # What the worker does at the end of a sync.
    now = timezone.now()
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.SUCCEEDED, created_count=7, pages=1, progress=1, finished_at=now
    )
    Integration.objects.filter(pk=integration.pk).update(status=Integration.Status.OK)

    expect(page.get_by_test_id("sync-done")).to_contain_text("7 new")
    expect(title).to_contain_text("OK")
    expect(page.get_by_test_id("sync-history")).to_contain_text("Succeeded")


def test_without_javascript_the_page_follows_a_running_sync_by_reloading(
    logged_in_page, owner, workspace
):
    """Before: with JavaScript off the page said "Queued" until reloaded by hand."""
    integration = _integration(workspace)
    run = SyncRun.objects.create(workspace=workspace, integration=integration)
    page = logged_in_page(owner, java_script_enabled=False)
    page.goto(f"/w/{workspace.slug}/integrations/{integration.pk}/")
    expect(page.get_by_text("Queued: waiting for a worker")).to_be_visible()

    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.SUCCEEDED,
        created_count=7,
        pages=1,
        progress=1,
        finished_at=timezone.now(),
    )

    expect(page.get_by_test_id("sync-done")).to_contain_text("7 new", timeout=10_000)
    # Once the run is over the page stops reloading itself.
    assert 'http-equiv="refresh"' not in page.content()
