"""Integration pages: connect, test the connection, sync with progress, upload."""

import io
import json
import re

import pytest
from django.urls import reverse

from integrations import services, uploads
from integrations.models import Integration, SyncRun, UploadRun
from integrations.uploads import execute_upload
from iofold.pipeline import ingest_traces
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY
from tests.traces.factories import trace_data
from traces.models import Trace

pytestmark = pytest.mark.django_db


def form_data(fake, **overrides):
    return {
        "name": "Langfuse prod",
        "region": "self",
        "custom_host": fake.url if fake else "",
        "public_key": PUBLIC_KEY,
        "secret_key": SECRET_KEY,
        "sync_interval_minutes": "60",
        **overrides,
    }


def test_admin_connects_langfuse_and_secret_is_never_rendered_again(
    login, owner, workspace, fake_langfuse
):
    fake = fake_langfuse()
    client = login(owner)

    response = client.post(reverse("integrations:create", args=[workspace.slug]), form_data(fake))

    integration = Integration.objects.for_workspace(workspace).get()
    assert response.status_code == 302
    assert integration.secret_key == SECRET_KEY
    assert integration.periodic_task.interval.every == 60
    for name in ("integrations:detail", "integrations:edit"):
        page = client.get(reverse(name, args=[workspace.slug, integration.pk])).content.decode()
        assert SECRET_KEY not in page
        assert "••••fake" in page


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret_key": "sk-lf-wrong"}, "rejected the API keys"),
        ({"custom_host": "http://127.0.0.1:9"}, "Could not reach http://127.0.0.1:9"),
        ({}, "Connected to project “Fake Project” (Langfuse 4.59.0)."),
    ],
)
def test_test_connection_explains_the_outcome(
    login, owner, workspace, fake_langfuse, change, expected
):
    fake = fake_langfuse()
    client = login(owner)

    response = client.post(
        reverse("integrations:test_new", args=[workspace.slug]),
        form_data(fake, **change),
        headers={"HX-Request": "true"},
    )

    assert expected in response.content.decode()
    assert "sk-lf-wrong" not in response.content.decode()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret_key": "sk-lf-wrong"}, "rejected the API keys"),
        ({}, "Connected to project “Fake Project” (Langfuse 4.59.0)."),
    ],
)
def test_test_connection_without_javascript_shows_the_result_on_the_form_as_typed(
    login, owner, workspace, fake_langfuse, change, expected
):
    """The button is a submit of its own (action=test): nothing saved, the page comes back
    with the result and what was typed, except the secret key."""
    fake = fake_langfuse()
    typed = form_data(fake, name="Langfuse staging", **change)

    response = login(owner).post(
        reverse("integrations:create", args=[workspace.slug]), {**typed, "action": "test"}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert expected in page
    assert 'value="Langfuse staging"' in page and f'value="{PUBLIC_KEY}"' in page
    assert typed["secret_key"] not in page
    assert "Enter the secret key again" in page
    assert not Integration.objects.exists()


def test_test_connection_without_javascript_on_the_edit_form_uses_the_stored_key(
    login, owner, workspace, fake_langfuse
):
    fake = fake_langfuse()
    integration = services.create_integration(
        workspace=workspace, name="x", host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY
    )
    typed = form_data(fake, name="renamed", secret_key="")

    response = login(owner).post(
        reverse("integrations:edit", args=[workspace.slug, integration.pk]),
        {**typed, "action": "test"},
    )

    page = response.content.decode()
    assert "Connected to project “Fake Project”" in page
    assert 'value="renamed"' in page and SECRET_KEY not in page
    integration.refresh_from_db()
    assert integration.name == "x"  # a test saves nothing


def test_the_test_connection_button_is_a_submit_without_javascript(login, owner, workspace):
    page = login(owner).get(reverse("integrations:create", args=[workspace.slug]))

    button = re.search(r'<button[^>]*data-testid="test-connection"[^>]*>', page.content.decode())
    assert 'type="submit"' in button[0] and 'name="action" value="test"' in button[0]


def test_test_connection_spots_a_server_that_is_not_langfuse(
    login, owner, workspace, fake_langfuse
):
    fake = fake_langfuse()
    fake.html_mode = True
    client = login(owner)

    response = client.post(reverse("integrations:test_new", args=[workspace.slug]), form_data(fake))

    assert "does not look like a Langfuse server" in response.content.decode()


def test_edit_with_empty_secret_keeps_the_stored_one(login, owner, workspace, fake_langfuse):
    fake = fake_langfuse()
    integration = services.create_integration(
        workspace=workspace, name="x", host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY
    )
    client = login(owner)

    client.post(
        reverse("integrations:edit", args=[workspace.slug, integration.pk]),
        form_data(fake, name="renamed", secret_key="", sync_interval_minutes=""),
    )

    integration.refresh_from_db()
    assert integration.name == "renamed"
    assert integration.secret_key == SECRET_KEY
    assert integration.periodic_task is None


def test_sync_now_shows_progress_that_stops_polling_when_done(
    login, member, workspace, fake_langfuse, django_capture_on_commit_callbacks
):
    fake = fake_langfuse(traces=12)
    integration = services.create_integration(
        workspace=workspace, name="x", host=fake.url, public_key=PUBLIC_KEY, secret_key=SECRET_KEY
    )
    client = login(member)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("integrations:sync", args=[workspace.slug, integration.pk]),
            headers={"HX-Request": "true"},
        )
    run = SyncRun.objects.get(integration=integration)
    assert 'hx-trigger="every 2s"' in response.content.decode()
    assert "Queued" in response.content.decode()
    assert len(callbacks) == 1  # the task is enqueued after commit

    services.run_sync(run_id=run.pk)
    url = reverse("integrations:run_progress", args=[workspace.slug, integration.pk, run.pk])
    response = client.get(url, headers={"HX-Request": "true"})

    assert response.status_code == 286  # htmx stops polling
    body = response.content.decode()
    assert "12 new" in body
    assert "every 2s" not in body
    detail = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    assert 'data-testid="sync-history"' in detail.content.decode()


def test_running_progress_keeps_polling(login, member, workspace, fake_langfuse):
    integration = services.create_integration(
        workspace=workspace, name="x", host="http://x.test", public_key="pk", secret_key="sk"
    )
    run = services.start_sync(integration=integration)
    services.claim_run(run_id=run.pk)
    client = login(member)

    url = reverse("integrations:run_progress", args=[workspace.slug, integration.pk, run.pk])
    response = client.get(url, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in response.content.decode()


def test_upload_keeps_good_lines_and_reports_bad_ones(
    login, member, workspace, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.VAR_DIR = tmp_path
    good = {"id": "t1", "name": "agent", "timestamp": "2026-11-20T10:00:00Z", "steps": []}
    export = {
        "id": "lf-1",
        "name": "exported",
        "timestamp": "2026-11-20T11:00:00Z",
        "input": '{"q": "hi"}',
        "observations": [
            {"id": "o1", "type": "TOOL", "name": "search", "startTime": "2026-11-20T11:00:01Z",
             "level": "ERROR", "statusMessage": "boom"},
        ],
    }  # fmt: skip
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"id": "t2", "name": "agent"}),  # no timestamp
        "",
        json.dumps(export),
        "[1, 2]",
    ]
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "traces.jsonl"
    client = login(member)

    with django_capture_on_commit_callbacks() as queued:
        response = client.post(
            reverse("integrations:upload", args=[workspace.slug]), {"file": upload}
        )

    # Accepted at once: the request stores the file and queues it for a worker.
    run = UploadRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:upload_run", args=[workspace.slug, run.pk])
    assert len(queued) == 1 and not Trace.objects.exists()
    waiting = client.get(response["Location"]).content.decode()
    assert "traces.jsonl is waiting for a worker" in waiting and 'hx-trigger="every 1s"' in waiting

    execute_upload(run_id=run.pk)  # what the worker's task does

    polled = client.get(response["Location"], headers={"HX-Request": "true"})
    assert polled.status_code == 286  # htmx stops polling: the report is final
    body = polled.content.decode()
    assert "2 of 5 lines imported from traces.jsonl" in body
    assert "<td>2</td><td>not valid JSON" in body
    assert "<td>3</td><td>missing required field &#x27;timestamp&#x27;" in body
    assert "<td>6</td><td>a line must be one JSON object" in body
    # In the file's order, though the bad JSON was refused before the batch was checked.
    assert re.findall(r"<tr><td>(\d+)</td>", body) == ["2", "3", "6"]
    traces = Trace.objects.for_workspace(workspace)
    assert set(traces.values_list("external_id", flat=True)) == {"t1", "lf-1"}
    assert traces.get(external_id="lf-1").has_error
    assert not list(tmp_path.glob("uploads/*"))  # the stored file is gone once ingested


def test_an_upload_with_more_problems_than_listed_lists_its_first_lines(workspace, monkeypatch):
    monkeypatch.setattr(uploads, "MAX_REPORTED_ERRORS", 2)
    no_timestamp = json.dumps({"id": "t", "name": "agent"}).encode()

    report = uploads.ingest_jsonl(
        workspace=workspace, lines=[no_timestamp, no_timestamp, b"{bad", b"{bad"]
    ).as_dict()

    # "only the first 2 are listed": lines 1 and 2, though lines 3 and 4 were refused first.
    assert [e["line"] for e in report["errors"]] == [1, 2]
    assert report["failed"] == 4 and report["errors_truncated"]


def test_upload_refuses_a_file_over_the_limit(login, member, workspace, settings, monkeypatch):
    monkeypatch.setattr("integrations.views.MAX_UPLOAD_BYTES", 10)
    upload = io.BytesIO(b'{"id": "x"}\n' * 5)
    upload.name = "big.jsonl"

    response = login(member).post(
        reverse("integrations:upload", args=[workspace.slug]), {"file": upload}
    )

    assert "the limit is" in response.content.decode()
    assert not Trace.objects.for_workspace(workspace).exists()


def test_nav_and_onboarding_point_to_integrations(login, owner, workspace):
    page = login(owner).get(reverse("workspaces:home", args=[workspace.slug])).content.decode()

    assert reverse("integrations:list", args=[workspace.slug]) in page
    assert "Connect a source or upload traces" in page


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"public_key": "abc"}, "public_key", "starts with pk-lf-"),
        ({"public_key": SECRET_KEY}, "public_key", "This is the secret key"),
        ({"public_key": "pk-lf-"}, "public_key", "starts with pk-lf-"),
        ({"secret_key": "abc"}, "secret_key", "starts with sk-lf-"),
        ({"secret_key": "sk-lf-has a space"}, "secret_key", "no spaces"),
    ],
)
def test_connect_refuses_keys_of_the_wrong_shape(
    login, owner, workspace, fake_langfuse, change, field, expected
):
    fake = fake_langfuse()
    response = login(owner).post(
        reverse("integrations:create", args=[workspace.slug]), form_data(fake, **change)
    )
    assert response.status_code == 400
    assert expected in " ".join(response.context["form"].errors[field])
    assert not Integration.objects.exists()


def test_a_form_sent_back_with_an_error_asks_for_the_secret_again(
    login, owner, workspace, fake_langfuse
):
    fake = fake_langfuse()
    response = login(owner).post(
        reverse("integrations:create", args=[workspace.slug]),
        form_data(fake, custom_host="not a url"),
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert "is not a URL" in page
    assert SECRET_KEY not in page
    assert "Enter the secret key again: it is not sent back to your browser." in page


def test_edit_refuses_a_public_key_of_the_wrong_shape(login, owner, workspace, make_integration):
    fake = type("F", (), {"url": "http://x.test"})
    integration = make_integration(fake)
    response = login(owner).post(
        reverse("integrations:edit", args=[workspace.slug, integration.pk]),
        form_data(fake, public_key="abc", secret_key=""),
    )
    assert response.status_code == 400 and "public_key" in response.context["form"].errors
    integration.refresh_from_db()
    assert integration.public_key == PUBLIC_KEY


def test_test_connection_names_a_key_of_the_wrong_shape(login, owner, workspace, fake_langfuse):
    fake = fake_langfuse()
    response = login(owner).post(
        reverse("integrations:test_new", args=[workspace.slug]),
        form_data(fake, public_key="abc"),
        headers={"HX-Request": "true"},
    )
    assert "starts with pk-lf-" in response.content.decode()
    assert fake.request_count() == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"secret_key": "sk-lf-wrong"}, "rejected the API keys"),
        ({"public_key": "pk-lf-other"}, "rejected the API keys"),
        ({"secret_key": ""}, "Connected to project “Fake Project”"),  # the stored secret
        ({}, "Connected to project “Fake Project”"),
    ],
)
def test_edit_form_tests_the_entered_unsaved_connection(
    login, owner, workspace, fake_langfuse, make_integration, change, expected
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    client = login(owner)
    edit_page = client.get(reverse("integrations:edit", args=[workspace.slug, integration.pk]))
    test_url = reverse("integrations:test_edit", args=[workspace.slug, integration.pk])
    assert f'hx-post="{test_url}"' in edit_page.content.decode()

    response = client.post(test_url, form_data(fake, **change), headers={"HX-Request": "true"})

    assert expected in response.content.decode()
    integration.refresh_from_db()
    assert integration.status != Integration.Status.AUTH_FAILED  # nothing saved or recorded
    assert integration.public_key == PUBLIC_KEY


def _traces(prefix: str, count: int) -> list[dict]:
    return [{**trace_data(n), "id": f"{prefix}-{n}"} for n in range(count)]


def test_integrations_page_without_integrations_links_to_the_traces_that_came_anyway(
    login, owner, workspace
):
    # The API and uploads need no integration: the page must not read as if nothing came.
    ingest_traces(workspace=workspace, source="api", traces=_traces("api", 2))
    ingest_traces(workspace=workspace, source="upload", traces=_traces("up", 1))

    page = login(owner).get(reverse("integrations:list", args=[workspace.slug])).content.decode()

    assert "No integrations yet" not in page
    origins = page[page.index('data-testid="trace-origins"') :]
    traces_url = reverse("traces:list", args=[workspace.slug])
    assert f'<a href="{traces_url}?source=upload">Upload</a>' in origins
    assert f'<a href="{traces_url}?source=api">API</a>' in origins


def test_integrations_page_names_beside_the_table_only_sources_without_an_integration(
    login, owner, workspace, fake_langfuse, make_integration
):
    integration = make_integration(fake_langfuse())
    ingest_traces(
        workspace=workspace, source="langfuse", integration=integration, traces=_traces("lf", 2)
    )
    ingest_traces(workspace=workspace, source="demo", traces=_traces("demo", 1))

    page = login(owner).get(reverse("integrations:list", args=[workspace.slug])).content.decode()

    assert 'data-testid="integrations"' in page
    origins = page[page.index('data-testid="trace-origins"') :].split("</p>")[0]
    assert "Demo traces" in origins
    assert "Langfuse" not in origins  # its traces are the table's row


def test_integrations_page_of_an_empty_workspace_offers_connecting_only_to_managers(
    login, owner, viewer, workspace
):
    url = reverse("integrations:list", args=[workspace.slug])
    create_url = reverse("integrations:create", args=[workspace.slug])

    page = login(owner).get(url).content.decode()
    assert "No integrations yet" in page
    assert 'data-testid="trace-origins"' not in page
    assert page.count(f'href="{create_url}"') == 2  # the toolbar's and the empty state's

    page = login(viewer).get(url).content.decode()
    assert "No integrations yet" in page
    assert f'href="{create_url}"' not in page  # a viewer cannot connect one


def test_a_sync_that_failed_before_saving_anything_does_not_claim_it_saved_some(
    login, owner, workspace, fake_langfuse, make_integration
):
    integration = make_integration(fake_langfuse(), host="http://127.0.0.1:9")  # refused

    adapter = services.get_adapter(integration, sleep=lambda seconds: None)  # no backoff
    run = services.run_sync(run_id=services.start_sync(integration=integration).pk, adapter=adapter)

    assert run.status == SyncRun.Status.FAILED
    page = login(owner).get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    html = page.content.decode()
    assert "Sync failed: Could not reach http://127.0.0.1:9" in html
    assert 'data-testid="integration-error"' not in html  # not also in a banner above
    assert "Saved before it stopped" not in html
    assert "Nothing was saved: once the cause is fixed, a retry starts again." in html


def test_a_failed_sync_offers_a_retry_where_it_is_shown(
    login, owner, viewer, workspace, fake_langfuse, make_integration
):
    integration = make_integration(fake_langfuse(), host="http://127.0.0.1:9")  # refused
    adapter = services.get_adapter(integration, sleep=lambda seconds: None)
    services.run_sync(run_id=services.start_sync(integration=integration).pk, adapter=adapter)
    sync = reverse("integrations:sync", args=[workspace.slug, integration.pk])
    retry = re.compile(
        rf'<form method="post" class="sync-action" action="{sync}"[^>]*>\s*'
        r'<input[^>]*csrfmiddlewaretoken[^>]*><button class="small" type="submit" '
        r'data-testid="retry-sync">Retry sync</button>'
    )
    client = login(owner)
    detail = client.get(reverse("integrations:detail", args=[workspace.slug, integration.pk]))
    listing = client.get(reverse("integrations:list", args=[workspace.slug]))
    assert retry.search(detail.content.decode()) and retry.search(listing.content.decode())

    # The retry is the sync button's POST: it queues a new run, which the list shows.
    assert client.post(sync).status_code == 302
    html = client.get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert 'data-testid="sync-running"' in html and ">Queued</a>" in html
    assert 'data-testid="retry-sync"' not in html
    SyncRun.objects.filter(status=SyncRun.Status.QUEUED).update(
        status=SyncRun.Status.RUNNING, pages=2, created_count=40
    )
    html = client.get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert "Syncing: page 2, 40 new</a>" in html

    SyncRun.objects.update(status=SyncRun.Status.FAILED)
    html = login(viewer).get(reverse("integrations:list", args=[workspace.slug])).content.decode()
    assert "Failed" in html and 'data-testid="retry-sync"' not in html  # cannot sync


def test_a_sync_before_its_first_page_says_what_it_waits_for(
    login, owner, workspace, fake_langfuse, make_integration
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    run = services.start_sync(integration=integration)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING)  # a worker took it

    progress = login(owner).get(
        reverse("integrations:run_progress", args=[workspace.slug, integration.pk, run.pk]),
        headers={"HX-Request": "true"},
    )

    html = progress.content.decode()
    assert f"Syncing: asking {fake.url} for the first page…" in html
    assert "page 0" not in html


def test_a_new_integrations_page_offers_sync_now_only_to_who_has_the_button(
    login, owner, viewer, workspace, make_integration
):
    integration = make_integration(type("F", (), {"url": "http://x.test"}))
    url = reverse("integrations:detail", args=[workspace.slug, integration.pk])

    assert "“Sync now” reads the traces" in login(owner).get(url).content.decode()
    # A viewer has no "Sync now" button: the page does not point to one.
    seen = login(viewer).get(url).content.decode()
    assert "No sync yet." in seen and "Sync now" not in seen

    services.set_integration_enabled(integration=integration, enabled=False)
    disabled = login(owner).get(url).content.decode()
    assert "It is disabled: it syncs once enabled." in disabled and "Sync now" not in disabled


def test_sync_now_during_a_running_sync_says_so(login, owner, workspace, make_integration):
    integration = make_integration(type("F", (), {"url": "http://x.test"}))
    run = services.start_sync(integration=integration)
    SyncRun.objects.filter(pk=run.pk).update(status=SyncRun.Status.RUNNING)
    url = reverse("integrations:sync", args=[workspace.slug, integration.pk])

    response = login(owner).post(url, follow=True)

    page = response.content.decode()
    assert "A sync is already running: its progress is below." in page
    assert "Sync started." not in page
    assert SyncRun.objects.filter(integration=integration).count() == 1


# --- the connection is checked when it is saved ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected", "status"),
    [
        (
            {"secret_key": "sk-lf-wrong"},
            "“Langfuse prod” saved, but the connection failed: Langfuse rejected the API keys",
            Integration.Status.AUTH_FAILED,
        ),
        (
            {},
            "“Langfuse prod” saved. Connected to project “Fake Project” (Langfuse 4.59.0).",
            Integration.Status.NEW,
        ),
    ],
)
def test_connecting_checks_the_keys_at_once_and_saves_them_either_way(
    login, owner, workspace, fake_langfuse, change, expected, status
):
    """Before: a wrong secret key was saved without a word, found only at the first sync."""
    fake = fake_langfuse()
    client = login(owner)

    page = client.post(
        reverse("integrations:create", args=[workspace.slug]),
        form_data(fake, **change),
        follow=True,
    )

    integration = Integration.objects.for_workspace(workspace).get()  # saved, nothing lost
    assert integration.status == status
    text = page.content.decode()
    assert expected in text
    assert "sk-lf-wrong" not in text


def test_editing_the_key_checks_it_and_a_rename_does_not(login, owner, workspace, fake_langfuse):
    fake = fake_langfuse()
    client = login(owner)
    client.post(reverse("integrations:create", args=[workspace.slug]), form_data(fake))
    integration = Integration.objects.for_workspace(workspace).get()
    url = reverse("integrations:edit", args=[workspace.slug, integration.pk])

    checks = fake.request_count("/api/public/projects")
    renamed = client.post(url, form_data(fake, name="Renamed", secret_key=""), follow=True)
    assert "“Renamed” saved." in renamed.content.decode()
    assert fake.request_count("/api/public/projects") == checks  # nothing to check again

    rekeyed = client.post(
        url, form_data(fake, name="Renamed", secret_key="sk-lf-wrong"), follow=True
    )
    text = rekeyed.content.decode()
    assert "“Renamed” saved, but the connection failed: Langfuse rejected the API keys" in text
    assert "sk-lf-wrong" not in text
    integration.refresh_from_db()
    assert integration.secret_key == "sk-lf-wrong"  # saved anyway: the user fixes it later


def test_a_host_that_never_answers_does_not_hold_the_save(login, owner, workspace, caplog):
    """A server that accepts the connection and never answers (a hung proxy)."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections queue in the kernel; nothing ever answers
        host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = login(owner)
        started = time.monotonic()
        page = client.post(
            reverse("integrations:create", args=[workspace.slug]),
            form_data(None, custom_host=host, secret_key="sk-lf-hung-secret"),
            follow=True,
        )
        elapsed = time.monotonic() - started

    assert elapsed < 8, elapsed
    text = page.content.decode()
    assert "“Langfuse prod” saved, but the connection failed:" in text
    assert "did not answer" in text
    assert Integration.objects.for_workspace(workspace).filter(host=host).exists()
    assert "sk-lf-hung-secret" not in text + caplog.text
