"""The integrations API and POST /api/v1/traces."""

import pytest
from django.urls import reverse

from integrations import services
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY, unreachable_langfuse
from traces.models import Trace
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_client(api_client, workspace, owner):
    _, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api_client


def _connect(token_client, fake, *, secret_key: str = SECRET_KEY) -> int:
    """Connect the fake Langfuse through the API; return the integration's id."""
    response = token_client.post(
        reverse("api-integrations"),
        {"name": "lf", "host": fake.url, "public_key": PUBLIC_KEY, "secret_key": secret_key},
        format="json",
    )
    return response.json()["id"]


def test_create_read_update_delete_integration_never_returns_the_secret(
    token_client, fake_langfuse
):
    fake = fake_langfuse()
    created = token_client.post(
        reverse("api-integrations"),
        {"name": "lf", "host": fake.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY,
         "filter_tags": ["prod"], "sync_interval_minutes": 30},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert SECRET_KEY not in created.content.decode()
    assert created.json()["secret_key_hint"] == "••••fake"

    tested = token_client.post(reverse("api-integration-test", args=[pk]))
    assert tested.json()["project_name"] == "Fake Project"

    patched = token_client.patch(
        reverse("api-integration", args=[pk]), {"enabled": False, "name": "lf2"}, format="json"
    )
    assert patched.json()["enabled"] is False
    assert patched.json()["name"] == "lf2"
    integration = Integration.objects.get(pk=pk)
    assert integration.periodic_task.enabled is False

    listed = token_client.get(reverse("api-integrations"))
    assert SECRET_KEY not in listed.content.decode()
    # A worker deletes it (tests/traces/test_integration_deletion.py); hidden meanwhile.
    deleted = token_client.delete(reverse("api-integration", args=[pk]))
    assert deleted.status_code == 202
    assert SECRET_KEY not in deleted.content.decode()
    assert token_client.get(reverse("api-integration", args=[pk])).status_code == 404


def test_bad_keys_give_a_specific_error(token_client, fake_langfuse):
    pk = _connect(token_client, fake_langfuse(), secret_key="sk-lf-nope")

    response = token_client.post(reverse("api-integration-test", args=[pk]))

    assert response.status_code == 400
    assert response.json()["code"] == "auth"
    assert "sk-lf-nope" not in response.content.decode()
    assert Integration.objects.get(pk=pk).status == Integration.Status.AUTH_FAILED


def test_sync_endpoint_queues_one_run(token_client, workspace, fake_langfuse):
    pk = _connect(token_client, fake_langfuse())

    first = token_client.post(reverse("api-integration-sync", args=[pk]))
    second = token_client.post(reverse("api-integration-sync", args=[pk]))

    assert first.status_code == 202
    assert first.json()["status"] == "queued"
    assert second.json()["id"] == first.json()["id"]
    assert SyncRun.objects.filter(integration_id=pk).count() == 1
    runs = token_client.get(reverse("api-integration-runs", args=[pk])).json()
    assert runs["results"][0]["trigger"] == "api"


def test_ingest_single_trace_and_batch_with_per_item_errors(token_client, workspace):
    one = {"id": "a", "name": "x", "timestamp": "2026-11-20T10:00:00Z"}
    response = token_client.post(reverse("api-traces-ingest"), one, format="json")
    assert response.status_code == 201
    assert response.json()["created"] == 1

    batch = [
        {**one, "name": "changed"},
        {"id": "b", "timestamp": "yesterday"},
        {"id": "c", "name": "y", "timestamp": "2026-11-20T10:00:00Z",
         "steps": [{"id": "s", "type": "robot", "name": "n"}]},
        {"id": "d", "name": None, "timestamp": "2026-11-21T10:00:00+02:00"},
    ]  # fmt: skip
    response = token_client.post(reverse("api-traces-ingest"), {"traces": batch}, format="json")

    body = response.json()
    assert response.status_code == 201
    assert (body["created"], body["updated"], body["failed"]) == (1, 1, 2)
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert "timestamp" in body["errors"][0]["error"]
    assert "robot" in body["errors"][1]["error"]
    traces = Trace.objects.for_workspace(workspace).filter(source="api")
    assert sorted(traces.values_list("external_id", flat=True)) == ["a", "d"]
    assert traces.get(external_id="a").name == "changed"


def test_ingest_refuses_oversized_batches(token_client, monkeypatch):
    monkeypatch.setattr("traces.api.MAX_API_TRACES", 2)
    items = [{"id": str(i), "timestamp": "2026-11-20T10:00:00Z"} for i in range(3)]

    response = token_client.post(reverse("api-traces-ingest"), items, format="json")

    assert response.status_code == 413
    assert "at most 2 traces" in response.json()["detail"]


def test_ingest_with_only_bad_items_is_a_400(token_client):
    response = token_client.post(reverse("api-traces-ingest"), [{"nope": 1}], format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 0


@pytest.mark.parametrize(
    ("keys", "field"),
    [
        ({"public_key": "abc"}, "public_key"),
        ({"public_key": SECRET_KEY}, "public_key"),
        ({"secret_key": "abc"}, "secret_key"),
        ({"secret_key": PUBLIC_KEY}, "secret_key"),
    ],
)
def test_create_refuses_keys_of_the_wrong_shape(token_client, keys, field):
    body = {"name": "lf", "host": "https://cloud.langfuse.com", "public_key": PUBLIC_KEY,
            "secret_key": SECRET_KEY, **keys}  # fmt: skip
    response = token_client.post(reverse("api-integrations"), body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Integration.objects.exists()


@pytest.mark.parametrize(
    "host",
    [
        "http://[::1",  # urlsplit raised ValueError on the unclosed bracket: a 500
        "https://[zz]",
        "http://]",
        "http://lang\nfuse.example",  # urlsplit drops the newline; the row kept it
        "http://lang\tfuse.example",
    ],
)
def test_create_refuses_a_host_that_is_no_url(token_client, host):
    body = {"name": "lf", "host": host, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY}

    response = token_client.post(reverse("api-integrations"), body, format="json")

    assert response.status_code == 400
    assert "is not a URL" in response.json()["host"][0]
    assert not Integration.objects.exists()


def test_update_refuses_a_public_key_of_the_wrong_shape(token_client, fake_langfuse):
    pk = _connect(token_client, fake_langfuse())
    response = token_client.patch(
        reverse("api-integration", args=[pk]), {"public_key": "abc"}, format="json"
    )
    assert response.status_code == 400 and "public_key" in response.json()
    assert Integration.objects.get(pk=pk).public_key == PUBLIC_KEY


@pytest.mark.parametrize("minutes", [10**30, 1e30, 2**31, 7 * 24 * 60 + 1, -1, 4])
def test_sync_interval_out_of_bounds_is_a_400(token_client, workspace, minutes):
    integration = unreachable_langfuse(workspace, sync_interval_minutes=60)
    url = reverse("api-integration", args=[integration.pk])

    response = token_client.patch(url, {"sync_interval_minutes": minutes}, format="json")

    assert response.status_code == 400, response.content
    assert "sync_interval_minutes" in response.json() or "interval" in response.json()["detail"]
    integration.refresh_from_db()
    assert integration.sync_interval_minutes == 60


def test_sync_interval_of_a_week_is_accepted(token_client, workspace):
    integration = services.create_integration(
        workspace=workspace,
        name="lf",
        host="http://127.0.0.1:9",
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
    )
    url = reverse("api-integration", args=[integration.pk])

    response = token_client.patch(url, {"sync_interval_minutes": 7 * 24 * 60}, format="json")

    assert response.status_code == 200
    assert response.json()["sync_interval_minutes"] == 7 * 24 * 60


@pytest.mark.parametrize("minutes", [10**30, 7 * 24 * 60 + 1])
def test_services_refuse_an_unbounded_sync_interval(workspace, minutes):
    with pytest.raises(IntegrationError, match="between 5 minutes and 10080 minutes"):
        services.create_integration(
            workspace=workspace,
            name="lf",
            host="http://127.0.0.1:9",
            public_key=PUBLIC_KEY,
            secret_key=SECRET_KEY,
            sync_interval_minutes=minutes,
        )
    assert not Integration.objects.exists()


def test_traces_collection_lists_and_ingests_at_one_url(token_client, workspace):
    """POST /api/v1/traces/ ingests; the slashless POST is an alias answering the same."""
    assert reverse("api-traces") == "/api/v1/traces/"
    assert reverse("api-traces-ingest") == "/api/v1/traces"
    one = {"id": "a", "name": "x", "timestamp": "2026-11-20T10:00:00Z"}

    created = token_client.post("/api/v1/traces/", one, format="json")
    again = token_client.post("/api/v1/traces", one, format="json")
    listed = token_client.get("/api/v1/traces/").json()

    assert created.status_code == 201
    assert again.status_code == 200
    assert again.json()["unchanged"] == 1
    assert [t["external_id"] for t in listed["results"]] == ["a"]
    assert token_client.get("/api/v1/traces").status_code == 405


def test_ingest_of_an_empty_body_is_a_400_detail(token_client):
    response = token_client.post("/api/v1/traces/", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": 'Send a trace object, a list of traces or {"traces": [...]}.'
    }


def test_ingest_of_traces_that_are_not_a_list_names_the_field(token_client):
    """{"traces": "x"} is a batch sent wrong, not one trace missing its id."""
    response = token_client.post("/api/v1/traces/", {"traces": "x"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": '"traces" must be a list of trace objects.'}


def test_a_gzip_body_of_more_json_values_than_a_plain_body_holds_is_413(token_client, settings):
    """31 KiB of gzip inflating to 32 MiB of ``{},`` took the worker from 0.2 to 1.1 GB
    parsing it, before the batch was refused for its size."""
    import gzip

    values = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2
    bomb = gzip.compress(b"[" + b"{}," * values + b"{}]")

    response = token_client.generic(
        "POST", "/api/v1/traces/", bomb, content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )  # fmt: skip

    assert response.status_code == 413
    assert "more JSON values" in response.json()["detail"]


def test_a_gzip_batch_larger_than_a_plain_body_is_still_taken(token_client, workspace, settings):
    import gzip
    import json

    text = "All good. " * 400  # 4 kB an input
    batch = [
        {"id": f"g{i}", "timestamp": "2026-11-20T10:00:00Z", "input": text} for i in range(1000)
    ]
    body = json.dumps(batch).encode()
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = token_client.generic(
        "POST", "/api/v1/traces/", gzip.compress(body), content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    )  # fmt: skip

    assert response.status_code == 201, response.content[:200]
    assert Trace.objects.for_workspace(workspace).count() == 1000


def test_ingest_takes_a_gzip_body_and_refuses_a_broken_one(token_client, workspace):
    import gzip
    import json

    batch = [
        {"id": f"z{i}", "name": "zipped", "timestamp": "2026-11-20T10:00:00Z"} for i in range(3)
    ]
    body = gzip.compress(json.dumps({"traces": batch}).encode())

    def post(data, encoding):
        return token_client.generic(
            "POST", "/api/v1/traces/", data,
            content_type="application/json", headers={"Content-Encoding": encoding},
        )  # fmt: skip

    created = post(body, "gzip")
    assert created.status_code == 201, created.content
    assert created.json()["created"] == 3
    broken = post(body[:-8], "gzip")
    assert broken.status_code == 400 and "truncated" in broken.json()["detail"]
    assert post(body, "br").status_code == 415
    assert Trace.objects.for_workspace(workspace).filter(name="zipped").count() == 3


# --- the Agents SDK source's response-reading key --------------------------------------------


def _agents_source(workspace, **fields) -> Integration:
    return Integration.objects.create(
        workspace=workspace, kind=Integration.Kind.OPENAI_AGENTS, name="agents", **fields
    )


def test_patch_sets_the_agents_sources_response_key_and_reads_waiting_traces_again(
    token_client, workspace, monkeypatch, django_capture_on_commit_callbacks
):
    """Before: only the UI could set it; the API refused any key on a receiving source."""
    from traces import agents_responses
    from traces.models import ResponseWait

    queued = []
    monkeypatch.setattr(agents_responses, "enqueue", lambda *args: queued.append(args))
    source = _agents_source(
        workspace,
        host="",
        secret_key="sk-old-rejected",
        status=Integration.Status.AUTH_FAILED,
        response_key_rejections=agents_responses.MAX_KEY_REJECTIONS,
    )
    ResponseWait.objects.create(workspace=workspace, integration=source, external_id="t1")
    url = reverse("api-integration", args=[source.pk])

    with django_capture_on_commit_callbacks(execute=True):
        patched = token_client.patch(
            url,
            {"response_key": "sk-new-key-4321", "response_base_url": "http://127.0.0.1:9/v1"},
            format="json",
        )

    assert patched.status_code == 200, patched.content
    assert "sk-new-key-4321" not in patched.content.decode()
    assert patched.json()["status"] == Integration.Status.OK
    source.refresh_from_db()
    assert source.secret_key == "sk-new-key-4321"  # stored encrypted (test_encryption)
    assert source.host == "http://127.0.0.1:9/v1"
    assert source.response_key_rejections == 0
    # The same re-read the UI's save starts: the traces received while reading was stopped.
    assert queued == [(agents_responses.REREAD_TASK, source.pk)]

    removed = token_client.patch(url, {"response_key": ""}, format="json")
    assert removed.status_code == 200
    source.refresh_from_db()
    assert (source.secret_key, source.host) == ("", "")


def test_patch_refuses_a_response_key_on_other_kinds_and_a_bad_base_url(
    token_client, workspace, production
):
    pk = Integration.objects.create(workspace=workspace, name="lf", host="http://127.0.0.1:9").pk
    refused = token_client.patch(
        reverse("api-integration", args=[pk]), {"response_key": "sk-x1234"}, format="json"
    )
    assert refused.status_code == 400
    assert "Only the OpenAI Agents SDK source" in refused.content.decode()

    source = _agents_source(workspace, host="")
    bad = token_client.patch(
        reverse("api-integration", args=[source.pk]),
        {"response_key": "sk-x1234", "response_base_url": "http://169.254.169.254/v1"},
        format="json",
    )
    assert bad.status_code == 400
    assert "link-local" in bad.content.decode()
    source.refresh_from_db()
    assert source.secret_key == ""  # nothing half-written


def test_the_response_key_is_the_workspaces_managers_only(
    api_client, workspace, other_workspace, owner, outsider
):
    from workspaces.models import Membership

    source = _agents_source(workspace, host="")
    url = reverse("api-integration", args=[source.pk])
    for ws, by, role, expected in (
        (other_workspace, outsider, Membership.Role.ADMIN, 404),
        (workspace, owner, Membership.Role.VIEWER, 403),
    ):
        _, raw = issue_token(workspace=ws, name=f"t-{role}", created_by=by, role=role)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        answer = api_client.patch(url, {"response_key": "sk-x1234"}, format="json")
        assert answer.status_code == expected, (role, answer.content)
    source.refresh_from_db()
    assert source.secret_key == ""


def test_renaming_an_agents_source_without_a_key_is_a_rename(token_client, workspace):
    """Before: 400 "host: This field cannot be blank", although such a source has no host."""
    source = _agents_source(workspace, host="")
    url = reverse("api-integration", args=[source.pk])

    renamed = token_client.patch(url, {"name": "agents (prod)"}, format="json")

    assert renamed.status_code == 200, renamed.json()
    source.refresh_from_db()
    assert (source.name, source.host) == ("agents (prod)", "")
