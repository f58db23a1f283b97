"""Traces pushed to an integration's webhook, signed with HMAC-SHA256 and fresh."""

import json
import time

import pytest

from integrations import services, webhooks
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY, post_webhook, webhook_integration
from tests.traces.factories import trace_data
from traces.models import Trace

pytestmark = pytest.mark.django_db


@pytest.fixture
def integration(workspace):
    return webhook_integration(workspace)


def test_signed_traces_are_stored_once(client, integration, workspace):
    payload = {"traces": [trace_data(1), trace_data(2)]}

    first = post_webhook(client, integration, payload)
    again = post_webhook(client, integration, payload)

    assert first.status_code == 200, first.content
    assert (first.json()["created"], again.json()["created"]) == (2, 0)
    assert again.json()["unchanged"] == 2
    stored = Trace.objects.for_workspace(workspace)
    assert stored.count() == 2
    assert set(stored.values_list("source", "integration_id")) == {("webhook", integration.pk)}


def test_bad_signature_is_refused(client, integration):
    response = post_webhook(client, integration, trace_data(1), secret="whsec_wrong")

    assert response.status_code == 401
    assert response.json()["detail"] == webhooks.NOT_AUTHENTIC
    assert not Trace.objects.exists()


def test_tampered_body_is_refused(client, integration):
    body = json.dumps(trace_data(1)).encode()
    ts = str(int(time.time()))
    signature = webhooks.sign(secret=integration.secret, timestamp=ts, body=body)

    response = client.post(
        f"/api/v1/integrations/{integration.pk}/webhook",
        data=body.replace(b"t1", b"t9"),
        content_type="application/json",
        headers={"X-Iofold-Timestamp": ts, "X-Iofold-Signature": signature},
    )

    assert response.status_code == 401


def test_replayed_request_older_than_five_minutes_is_refused(client, integration):
    stale = int(time.time()) - 301

    response = post_webhook(client, integration, trace_data(1), timestamp=stale)

    assert response.status_code == 401
    assert "5 minutes" in response.json()["detail"]
    assert not Trace.objects.exists()


def test_missing_headers_and_unknown_integrations_are_refused(client, integration):
    response = client.post(
        f"/api/v1/integrations/{integration.pk}/webhook",
        data=json.dumps(trace_data(1)),
        content_type="application/json",
    )
    assert response.status_code == 401

    integration.pk += 1000  # another integration's id: same answer, nothing to probe
    assert post_webhook(client, integration, trace_data(1)).status_code == 401


def _unauthenticated_failures(integration, other):
    """Yield (case, url, headers) for every way an outsider's request can fail."""
    body = json.dumps(trace_data(1)).encode()
    now = str(int(time.time()))
    good = webhooks.sign(secret=integration.secret, timestamp=now, body=body)
    url = f"/api/v1/integrations/{integration.pk}/webhook"
    yield "unknown id", "/api/v1/integrations/999999/webhook", _headers(now, good)
    yield "no secret configured", f"/api/v1/integrations/{other.pk}/webhook", _headers(now, good)
    yield "no headers", url, {}
    yield "no signature", url, {"X-Iofold-Timestamp": now}
    yield "no timestamp", url, {"X-Iofold-Signature": good}
    yield "timestamp not a number", url, _headers("yesterday", good)
    yield "timestamp with a sign", url, _headers(f"+{now}", good)
    yield "timestamp of 400 digits", url, _headers("9" * 400, good)
    yield "stale timestamp", url, _headers(str(int(now) - 301), good)
    yield "bad signature", url, _headers(now, "sha256=" + "0" * 64)
    yield "signature not hex", url, _headers(now, "sha256=\u00e9\U0001f600")


def _headers(timestamp, signature):
    return {"X-Iofold-Timestamp": timestamp, "X-Iofold-Signature": signature}


def test_every_unauthenticated_failure_gets_the_same_answer(client, integration, workspace):
    """Unknown ids, ids without a secret and bad signatures are indistinguishable."""
    other = services.create_integration(
        workspace=workspace,
        name="no secret",
        host="http://127.0.0.1:9",
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
    )
    body = json.dumps(trace_data(1)).encode()
    answers = {}
    for case, url, headers in _unauthenticated_failures(integration, other):
        response = client.post(url, data=body, content_type="application/json", headers=headers)
        answers[case] = (response.status_code, response.content)

    expected = (401, json.dumps({"detail": webhooks.NOT_AUTHENTIC}).encode())
    assert answers == dict.fromkeys(answers, expected)
    assert not Trace.objects.exists()


def test_a_regenerated_secret_replaces_the_old_one(client, integration):
    old = integration.secret
    new = webhooks.regenerate_webhook_secret(integration=integration)

    assert post_webhook(client, integration, trace_data(1), secret=old).status_code == 401
    assert post_webhook(client, integration, trace_data(1), secret=new).status_code == 200


def test_invalid_traces_are_reported_per_index(client, integration):
    response = post_webhook(client, integration, [trace_data(1), {"id": "x"}])

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["failed"]) == (1, 1)
    assert body["errors"][0]["index"] == 1


def test_the_secret_is_shown_once_then_only_its_last_four(client, owner, workspace, integration):
    client.force_login(owner)

    shown = client.post(
        f"/w/{workspace.slug}/integrations/{integration.pk}/webhook-secret/",
        {"confirmed": "yes"},
        follow=True,
    )
    integration.refresh_from_db()
    detail = client.get(f"/w/{workspace.slug}/integrations/{integration.pk}/")

    assert shown.status_code == 200
    assert integration.webhook_secret in shown.content.decode()
    # Neither the browser (back button) nor a proxy keeps the page with the secret.
    assert "no-store" in shown["Cache-Control"]
    assert integration.webhook_secret not in detail.content.decode()
    assert integration.webhook_secret_hint in detail.content.decode()


def test_refreshing_the_new_secrets_page_keeps_the_secret_just_copied(
    client, owner, workspace, integration
):
    """The page is reached by a redirect: a refresh does not make (and show) yet another
    secret, which would silently break the one already copied."""
    client.force_login(owner)
    url = f"/w/{workspace.slug}/integrations/{integration.pk}/webhook-secret/"

    made = client.post(url, {"confirmed": "yes"})
    assert made.status_code == 302 and made.url == url
    integration.refresh_from_db()
    copied = integration.webhook_secret
    assert copied in client.get(url).content.decode()

    refreshed = client.get(url, follow=True)
    integration.refresh_from_db()
    assert integration.webhook_secret == copied
    assert copied not in refreshed.content.decode()
    assert "A webhook secret is shown only once" in refreshed.content.decode()
