"""A body sent chunked without Content-Length never reaches Django under WSGI: every
endpoint that reads a body says so (411) instead of judging an empty body."""

import pytest
from django.urls import reverse

from iofold.lib.bodies import LENGTH_REQUIRED
from tests.integrations.helpers import webhook_integration
from tests.integrations.otlp_helpers import api_token
from traces.models import Trace

CHUNKED = {"HTTP_TRANSFER_ENCODING": "chunked"}


@pytest.mark.parametrize(
    "url_name", ["api-traces", "api-traces-ingest", "api-openai-agents-ingest"]
)
def test_a_chunked_api_post_is_411(client, workspace, url_name):
    """Before: 400 "no traces" / "not an exporter payload", as if nothing was sent."""
    response = client.post(
        reverse(url_name),
        data=b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace, 'member')}",
        **CHUNKED,
    )
    assert response.status_code == 411, response.content
    assert response.json() == {"detail": LENGTH_REQUIRED}
    assert not Trace.objects.exists()


def test_a_chunked_webhook_push_is_411_not_unsigned(client, workspace):
    """Before: 401, telling a correctly signing sender its signature was wrong."""
    integration = webhook_integration(workspace)
    response = client.post(
        f"/api/v1/integrations/{integration.pk}/webhook",
        data=b"",
        content_type="application/json",
        **CHUNKED,
    )
    assert response.status_code == 411
    assert response.json() == {"detail": LENGTH_REQUIRED}


def test_a_chunked_body_with_a_length_is_read(client, workspace):
    response = client.post(
        reverse("api-traces"),
        data=b"{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace, 'member')}",
        **CHUNKED,
    )
    assert response.status_code == 400  # judged on what was sent: an empty object


def test_every_operation_that_takes_a_body_documents_its_411():
    from tests.test_api import SCHEMA

    bodied = [
        (method, path, operation)
        for path, operations in SCHEMA["paths"].items()
        for method, operation in operations.items()
        if method in ("post", "put", "patch")
    ]
    assert len(bodied) > 10
    for method, path, operation in bodied:
        answer = operation["responses"].get("411")
        assert answer, f"{method.upper()} {path} does not document its 411"
        assert answer["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        assert "Content-Length" in answer["description"]


@pytest.mark.parametrize(
    ("method", "url"), [("post", "/api/v1/eval-sets/"), ("patch", "/api/v1/eval-sets/1/")]
)
def test_any_chunked_api_body_is_411_as_documented(client, workspace, method, url):
    """Before: 400 "This field is required.", judging a body that was never read."""
    response = getattr(client, method)(
        url,
        data=b"",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token(workspace, 'member')}",
        **CHUNKED,
    )
    assert response.status_code == 411, response.content
    assert response.json() == {"detail": LENGTH_REQUIRED}
