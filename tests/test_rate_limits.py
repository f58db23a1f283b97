"""Rate limits: API throttles per token and per user, and traces per minute per workspace.

Every other test runs without limits (``_no_rate_limits`` in conftest); these switch them
on. A refused request answers 429 with ``Retry-After`` and stores nothing.
"""

import io
import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from google.rpc import status_pb2
from rest_framework.test import APIClient

from integrations import services, webhooks
from tests.integrations.otlp_helpers import Recorder, api_token, protobuf_body, semconv_agent_trace
from tests.traces.factories import trace_data
from traces.models import Trace

pytestmark = pytest.mark.django_db


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _throttled(response) -> int:
    assert response.status_code == 429, response.content
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    return wait


# --- API throttles --------------------------------------------------------------------------


def test_a_token_over_its_rate_gets_429_and_other_tokens_do_not(settings, workspace):
    settings.IOFOLD_API_THROTTLE_RATES = {"token": "2/minute"}
    busy, other = _client(api_token(workspace)), _client(api_token(workspace))

    assert [busy.get("/api/v1/traces/").status_code for _ in range(2)] == [200, 200]
    response = busy.get("/api/v1/traces/")

    _throttled(response)
    assert "Request was throttled" in response.json()["detail"]
    assert other.get("/api/v1/traces/").status_code == 200


def test_a_user_is_limited_across_session_and_tokens(settings, workspace, owner, client):
    settings.IOFOLD_API_THROTTLE_RATES = {"user": "2/minute"}
    client.force_login(owner)
    assert client.get("/api/v1/traces/").status_code == 200
    from workspaces.services import issue_token

    token = issue_token(workspace=workspace, name="ci", created_by=owner, role="member")[1]
    assert _client(token).get("/api/v1/traces/").status_code == 200

    _throttled(client.get("/api/v1/traces/"))
    _throttled(_client(token).get("/api/v1/traces/"))


def test_rates_are_off_without_settings(settings, workspace):
    settings.IOFOLD_API_THROTTLE_RATES = {"token": "off", "user": ""}
    client = _client(api_token(workspace))
    assert {client.get("/api/v1/traces/").status_code for _ in range(5)} == {200}


# --- traces per minute per workspace --------------------------------------------------------


@pytest.fixture
def ingest_limit(settings):
    settings.IOFOLD_INGEST_TRACES_PER_MINUTE = 3
    return 3


def test_api_ingest_over_the_budget_is_refused_whole(ingest_limit, workspace, other_workspace):
    client = _client(api_token(workspace))
    first = client.post("/api/v1/traces/", [trace_data(1), trace_data(2)], format="json")
    assert first.status_code == 201

    refused = client.post("/api/v1/traces/", [trace_data(3), trace_data(4)], format="json")

    _throttled(refused)
    assert "at most 3 traces per minute" in refused.json()["detail"]
    assert Trace.objects.for_workspace(workspace).count() == 2
    # What is left of the budget still admits a smaller batch, and workspaces are apart.
    assert client.post("/api/v1/traces/", [trace_data(3)], format="json").status_code == 201
    other = _client(api_token(other_workspace))
    assert other.post("/api/v1/traces/", [trace_data(1)], format="json").status_code == 201


def test_a_batch_larger_than_the_budget_says_so(ingest_limit, workspace):
    client = _client(api_token(workspace))
    batch = [trace_data(n) for n in range(4)]
    response = client.post("/api/v1/traces/", batch, format="json")
    _throttled(response)
    assert "send smaller batches" in response.json()["detail"]


def test_otlp_over_the_budget_gets_a_retryable_429(settings, client, workspace):
    settings.IOFOLD_INGEST_TRACES_PER_MINUTE = 1
    recorder = Recorder()
    semconv_agent_trace(recorder)
    semconv_agent_trace(recorder)  # two traces in one export
    response = client.post(
        "/v1/traces",
        protobuf_body(recorder.take()),
        content_type="application/x-protobuf",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace)}",
    )
    _throttled(response)
    assert status_pb2.Status.FromString(response.content).code == 8  # RESOURCE_EXHAUSTED
    assert not Trace.objects.for_workspace(workspace).exists()


def test_agents_receiver_over_the_budget_gets_429(settings, workspace):
    settings.IOFOLD_INGEST_TRACES_PER_MINUTE = 1
    items = [{"object": "trace", "id": f"trace_{n:032x}", "workflow_name": "w"} for n in (1, 2)]
    response = _client(api_token(workspace)).post(
        "/api/v1/openai/traces/ingest", {"data": items}, format="json"
    )
    _throttled(response)
    assert not Trace.objects.for_workspace(workspace).exists()


def test_webhook_over_the_budget_gets_429(ingest_limit, client, workspace):
    integration = services.create_integration(
        workspace=workspace, name="lf", host="http://127.0.0.1:9", public_key="pk", secret_key="s"
    )
    secret = webhooks.regenerate_webhook_secret(integration=integration)
    body = json.dumps([trace_data(n) for n in range(4)]).encode()
    now = str(int(time.time()))
    response = client.post(
        f"/api/v1/integrations/{integration.pk}/webhook",
        data=body,
        content_type="application/json",
        headers={
            "X-Iofold-Timestamp": now,
            "X-Iofold-Signature": webhooks.sign(secret=secret, timestamp=now, body=body),
        },
    )
    _throttled(response)
    assert not Trace.objects.for_workspace(workspace).exists()


def test_upload_over_the_budget_shows_why_and_stores_nothing(ingest_limit, login, member):
    lines = "\n".join(json.dumps(trace_data(n)) for n in range(4)).encode()
    upload = SimpleUploadedFile("t.jsonl", io.BytesIO(lines).read())
    response = login(member).post("/w/acme/integrations/upload/", {"file": upload})
    _throttled(response)
    assert "send smaller batches" in response.content.decode()
    assert not Trace.objects.exists()
