"""Connect Langfuse in the browser, test the connection, sync on a real worker, see the traces."""

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from integrations.models import Integration
from tests.fakes.langfuse_server import FakeLangfuse
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY, recent_base_time

pytestmark = pytest.mark.worker


@pytest.fixture
def fake():
    spacing = timedelta(seconds=30)
    server = FakeLangfuse(traces=30, spacing=spacing, base_time=recent_base_time(30, spacing))
    yield server.start()
    server.stop()


def test_connect_test_sync_and_see_traces(
    celery_worker_process, transactional_db, logged_in_page, workspace, owner, fake
):
    page = logged_in_page(owner)

    page.goto(f"/w/{workspace.slug}/integrations/")
    page.get_by_role("button", name="Connect Langfuse").first.click()
    page.get_by_label("Name", exact=False).and_(page.locator("#id_name")).fill("Langfuse prod")
    page.get_by_label("Self-hosted", exact=True).check()
    page.locator("#id_custom_host").fill(fake.url)
    page.locator("#id_public_key").fill(PUBLIC_KEY)
    page.locator("#id_secret_key").fill("sk-lf-typo")
    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("connection-result")).to_contain_text("rejected the API keys")

    page.locator("#id_secret_key").fill(SECRET_KEY)
    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("connection-result")).to_contain_text(
        "Connected to project “Fake Project”"
    )
    page.get_by_role("button", name="Connect", exact=True).click()

    expect(page.get_by_test_id("secret-hint")).to_have_text("••••fake")
    expect(page.locator("body")).not_to_contain_text(SECRET_KEY)
    page.get_by_test_id("sync-now").click()
    progress = page.get_by_test_id("sync-progress")
    expect(progress).to_have_attribute("data-status", re.compile("queued|running|succeeded"))
    expect(page.get_by_test_id("sync-done")).to_contain_text("30 new", timeout=60_000)
    expect(page.get_by_test_id("trace-count")).to_have_text("30")

    integration = Integration.objects.get(workspace=workspace)
    assert integration.traces.count() == 30
    link = page.get_by_test_id("traces-link")
    if link.count():
        link.click()
        expect(page.locator("body")).to_contain_text("agent")
