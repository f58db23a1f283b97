"""Langfuse hosts in production: public addresses only, on save and on every connection.

The fake Langfuse listens on 127.0.0.1, so it is exactly what a workspace must not reach
once ``IOFOLD_ALLOW_PRIVATE_HOSTS`` is off.
"""

from types import SimpleNamespace

import pytest
from django.urls import reverse

from integrations import services
from integrations.adapters.base import AdapterError, ScoreIn
from integrations.exceptions import IntegrationError
from integrations.models import Integration, SyncRun
from tests.fakes.forward_proxy import ForwardProxy
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY, Sleeps
from tests.integrations.test_api import token_client  # noqa: F401 (fixture)
from tests.integrations.test_views import form_data

pytestmark = pytest.mark.django_db

REFUSED = "127.0.0.1 is a loopback address; iofold only connects to public addresses."


@pytest.fixture
def saved_before(workspace, fake_langfuse):
    """An integration on 127.0.0.1 that got into the database without the save check."""
    fake = fake_langfuse(traces=3)
    integration = Integration.objects.create(
        workspace=workspace,
        name="Langfuse prod",
        host=fake.url,
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
    )
    return integration, fake


def test_the_form_refuses_a_private_host_on_the_field_and_saves_nothing(
    login, owner, workspace, fake_langfuse, production
):
    fake = fake_langfuse()
    client = login(owner)

    response = client.post(reverse("integrations:create", args=[workspace.slug]), form_data(fake))

    assert response.status_code == 400
    assert response.context["form"].errors["custom_host"] == [REFUSED]
    assert REFUSED in response.content.decode()
    assert not Integration.objects.exists()
    assert fake.requests == []


def test_editing_to_a_private_host_is_refused_and_keeps_the_old_one(
    login, owner, workspace, production
):
    integration = Integration.objects.create(
        workspace=workspace, name="lf", host="https://cloud.langfuse.com", public_key=PUBLIC_KEY
    )
    client = login(owner)

    response = client.post(
        reverse("integrations:edit", args=[workspace.slug, integration.pk]),
        form_data(SimpleNamespace(url="http://169.254.169.254/latest")),
    )

    assert response.context["form"].errors["custom_host"] == [
        "169.254.169.254 is a link-local address; iofold only connects to public addresses."
    ]
    integration.refresh_from_db()
    assert integration.host == "https://cloud.langfuse.com"


def test_test_connection_of_unsaved_keys_explains_the_refusal(
    login, owner, workspace, fake_langfuse, production
):
    fake = fake_langfuse()
    client = login(owner)

    response = client.post(
        reverse("integrations:test_new", args=[workspace.slug]),
        form_data(fake),
        headers={"HX-Request": "true"},
    )

    assert REFUSED in response.content.decode()
    assert fake.requests == []


def test_the_api_refuses_a_private_host_as_a_field_error_and_saves_nothing(
    token_client,  # noqa: F811
    fake_langfuse,
    production,
):
    fake = fake_langfuse()
    body = {"name": "lf", "host": fake.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY}

    response = token_client.post(reverse("api-integrations"), body, format="json")

    assert response.status_code == 400
    assert response.json() == {"host": [REFUSED]}
    assert not Integration.objects.exists()


def test_the_api_refuses_to_move_an_integration_to_a_private_host(
    token_client,  # noqa: F811
    workspace,
    production,
):
    integration = Integration.objects.create(
        workspace=workspace, name="lf", host="https://cloud.langfuse.com", public_key=PUBLIC_KEY
    )

    response = token_client.patch(
        reverse("api-integration", args=[integration.pk]),
        {"host": "http://10.0.0.5:5432"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["host"] == [
        "10.0.0.5 is a private address; iofold only connects to public addresses."
    ]
    integration.refresh_from_db()
    assert integration.host == "https://cloud.langfuse.com"


def test_the_allowlist_lets_an_on_premises_langfuse_through_form_api_and_connection(
    login,
    owner,
    workspace,
    fake_langfuse,
    production,
    token_client,  # noqa: F811
):
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.0/8"]
    fake = fake_langfuse()
    client = login(owner)

    created = client.post(reverse("integrations:create", args=[workspace.slug]), form_data(fake))
    api = token_client.post(
        reverse("api-integrations"),
        {"name": "lf2", "host": fake.url, "public_key": PUBLIC_KEY, "secret_key": SECRET_KEY},
        format="json",
    )
    integration = Integration.objects.get(name="Langfuse prod")
    tested = token_client.post(reverse("api-integration-test", args=[integration.pk]))

    assert created.status_code == 302
    assert api.status_code == 201, api.content
    assert tested.json()["project_name"] == "Fake Project"


def test_a_sync_of_a_host_that_slipped_past_the_check_fails_without_connecting(
    saved_before, production
):
    integration, fake = saved_before
    run = services.start_sync(integration=integration)
    sleeps = Sleeps()

    finished = services.run_sync(
        run_id=run.pk, adapter=services.get_adapter(integration, sleep=sleeps)
    )

    message = f"Could not reach {fake.url}: {REFUSED}"
    assert finished.status == SyncRun.Status.FAILED
    assert finished.error == message
    integration.refresh_from_db()
    assert (integration.status, integration.last_error) == (Integration.Status.ERROR, message)
    assert sleeps == []  # refused for good, not retried
    assert fake.requests == []


def test_the_guard_refuses_each_call_of_the_adapter(saved_before, production):
    """Connection check and score push, on a host that slipped past the save check."""
    integration, fake = saved_before
    adapter = services.get_adapter(integration, sleep=Sleeps())
    score = ScoreIn(id="s1", trace_id="t1", name="eval", value=True)

    for call in (adapter.test_connection, lambda: adapter.push_scores([score])):
        with pytest.raises(AdapterError) as info:
            call()
        assert (info.value.code, info.value.permanent) == ("unreachable", True)
        assert info.value.message == f"Could not reach {fake.url}: {REFUSED}"
    assert fake.requests == []
    assert fake.score_posts == 0


def test_test_connection_of_a_saved_integration_reports_the_refusal(saved_before, production):
    integration, fake = saved_before

    with pytest.raises(IntegrationError) as info:
        services.test_connection(integration=integration)

    assert info.value.message == REFUSED
    assert (info.value.code, info.value.permanent) == ("unreachable", True)
    assert fake.requests == []


def test_with_private_hosts_allowed_the_same_integration_syncs(saved_before):
    integration, fake = saved_before
    run = services.start_sync(integration=integration)

    finished = services.run_sync(run_id=run.pk)

    assert finished.status == SyncRun.Status.SUCCEEDED, finished.error
    assert finished.created_count == 3


def test_the_admin_refuses_a_private_host_too(client, workspace, production):
    from accounts.models import User

    integration = Integration.objects.create(
        workspace=workspace, name="Langfuse", host="https://cloud.langfuse.com"
    )
    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    url = reverse("admin:integrations_integration_change", args=[integration.pk])
    response = client.get(url)
    data = {k: v for k, v in response.context["adminform"].form.initial.items() if v is not None}
    data.update(workspace=workspace.pk, host="http://127.0.0.1:6379", periodic_task="")

    response = client.post(url, data)

    assert response.status_code == 200
    assert REFUSED in response.content.decode()
    integration.refresh_from_db()
    assert integration.host == "https://cloud.langfuse.com"
    # The same form with a public address saves.
    assert client.post(url, {**data, "host": "https://93.184.215.14"}).status_code == 302


def test_with_an_egress_proxy_the_sync_goes_through_it(saved_before, settings):
    integration, fake = saved_before
    proxy = ForwardProxy().start()
    settings.IOFOLD_OUTBOUND_PROXY = proxy.url
    try:
        finished = services.run_sync(run_id=services.start_sync(integration=integration).pk)
    finally:
        proxy.stop()

    assert finished.status == SyncRun.Status.SUCCEEDED, finished.error
    assert finished.created_count == 3
    assert proxy.forwarded and all(url.startswith(fake.url) for _, url in proxy.forwarded)
    assert len(fake.requests) == len(proxy.forwarded)


@pytest.mark.parametrize(
    "host", ["http://langfuse..example.com", "http://999.999.999.999", "http://[v1.x]"]
)
def test_a_host_name_that_cannot_be_valid_is_refused_on_the_field_not_a_500(
    login, owner, workspace, production, host
):
    client = login(owner)

    response = client.post(
        reverse("integrations:create", args=[workspace.slug]),
        form_data(SimpleNamespace(url=host)),
    )

    assert response.status_code == 400
    assert response.context["form"].errors["custom_host"] == [
        "The URL's host name is not valid; check it for typing mistakes."
    ]
    assert not Integration.objects.exists()
