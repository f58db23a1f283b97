"""LLM base URLs in production: public addresses only, on save and on every call.

The fake LLM server listens on 127.0.0.1, so it is exactly what a workspace must not reach
once ``IOFOLD_ALLOW_PRIVATE_HOSTS`` is off.
"""

import pytest
from django.urls import reverse

from evals.exceptions import EvalError
from evals.generation.provider_settings import resolve_provider, update_provider_settings
from evals.generation.providers import ProviderError, get_provider
from evals.generation.services import start_generation
from evals.generation.worker import run_generation
from evals.models import ProviderSettings
from tests.evals.builders import labelled_set
from tests.fakes.forward_proxy import ForwardProxy

pytestmark = pytest.mark.django_db

KEY = "sk-test-outbound-5678"
REFUSED = "127.0.0.1 is a loopback address; iofold only connects to public addresses."


def post_settings(client, workspace, base_url: str):
    return client.post(
        reverse("evals:settings", kwargs={"slug": workspace.slug}),
        {"provider": "openai", "model": "gpt-4.1-mini", "base_url": base_url, "api_key": KEY},
    )


def test_the_settings_form_refuses_a_private_base_url_on_the_field(
    client, workspace, owner, fake_llm, production
):
    client.force_login(owner)

    response = post_settings(client, workspace, fake_llm.openai_base_url)

    assert response.status_code == 400
    assert response.context["form"].errors["base_url"] == [REFUSED]
    page = response.content.decode()
    # Shown again with what was typed, but the key is asked for again, never sent back.
    assert fake_llm.openai_base_url in page and KEY not in page
    assert not ProviderSettings.objects.exists()


def test_the_service_refuses_a_private_base_url(workspace, production):
    with pytest.raises(EvalError) as info:
        update_provider_settings(
            workspace=workspace, provider="openai", base_url="http://169.254.169.254/v1"
        )

    assert info.value.message == (
        "Base URL: 169.254.169.254 is a link-local address; "
        "iofold only connects to public addresses."
    )
    assert not ProviderSettings.objects.exists()


def test_the_allowlist_lets_an_on_premises_model_server_through(
    client, workspace, owner, fake_llm, production
):
    production.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = ["127.0.0.0/8"]
    client.force_login(owner)

    response = post_settings(client, workspace, fake_llm.openai_base_url)

    assert response.status_code == 302
    assert ProviderSettings.objects.get().base_url == fake_llm.openai_base_url


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_a_call_to_a_private_base_url_is_refused_for_good_without_connecting(
    name, fake_llm, production
):
    base_url = fake_llm.openai_base_url if name == "openai" else fake_llm.anthropic_base_url
    provider = get_provider(name, api_key=KEY, model="m", base_url=base_url, max_retries=0)

    with pytest.raises(ProviderError) as info:
        provider.complete(system="s", messages=[{"role": "user", "content": "hi"}])

    assert info.value.message == f"{name}: {REFUSED}"
    assert info.value.permanent is True
    assert fake_llm.requests == []


def test_a_generation_on_a_base_url_that_slipped_past_the_check_fails_with_the_reason(
    workspace, fake_llm, production
):
    ProviderSettings.objects.create(
        workspace=workspace,
        provider="openai",
        model="gpt-4.1-mini",
        base_url=fake_llm.openai_base_url,
        api_key=KEY,
    )
    eval_set, _ = labelled_set(workspace, good=2, bad=2)

    generation = run_generation(generation_id=start_generation(eval_set=eval_set, enqueue=False).pk)

    assert generation.status == "failed"  # not queued again for a retry
    assert REFUSED in generation.error
    assert fake_llm.requests == []


def test_the_servers_key_never_goes_to_a_base_url_the_workspace_chose(workspace, settings):
    settings.OPENAI_API_KEY = "sk-operator-secret-0001"
    with pytest.raises(EvalError, match="needs this workspace's own API key"):
        update_provider_settings(
            workspace=workspace, provider="openai", base_url="https://llm.example.com/v1"
        )
    assert not ProviderSettings.objects.for_workspace(workspace).exists()
    # A row saved before this rule (or by hand) does not get the key either.
    ProviderSettings.objects.create(
        workspace=workspace, provider="openai", base_url="https://llm.example.com/v1"
    )
    choice = resolve_provider(workspace=workspace)
    assert (choice.provider, choice.api_key) == ("offline", "")


def test_the_servers_key_is_used_with_the_servers_endpoint(workspace, settings):
    settings.OPENAI_API_KEY = "sk-operator-secret-0001"
    settings.OPENAI_BASE_URL = ""
    update_provider_settings(workspace=workspace, provider="openai", model="gpt-4.1-mini")
    choice = resolve_provider(workspace=workspace)
    assert (choice.api_key, choice.key_source, choice.base_url) == (
        "sk-operator-secret-0001",
        "environment",
        "",
    )


@pytest.mark.parametrize("name", ["openai", "anthropic"])
def test_with_an_egress_proxy_llm_calls_go_through_it(name, fake_llm, settings):
    settings.IOFOLD_OUTBOUND_PROXY = (proxy := ForwardProxy().start()).url
    base_url = fake_llm.openai_base_url if name == "openai" else fake_llm.anthropic_base_url
    fake_llm.push_text("hello through the proxy")
    provider = get_provider(name, api_key=KEY, model="m", base_url=base_url, max_retries=0)
    try:
        completion = provider.complete(system="s", messages=[{"role": "user", "content": "hi"}])
    finally:
        proxy.stop()

    assert completion.text == "hello through the proxy"
    assert [url.split("?")[0] for _, url in proxy.forwarded] == [
        fake_llm.url + fake_llm.requests[0].path
    ]


def test_a_workspace_key_no_configured_key_decrypts_does_not_become_the_servers(
    workspace, settings
):
    """Keys restored without their encryption key read as unset: the workspace then
    generates offline until it enters its key again, not on the operator's account."""
    from cryptography.fernet import Fernet

    settings.OPENAI_API_KEY = "sk-operator-secret-0001"
    settings.OPENAI_BASE_URL = ""
    update_provider_settings(workspace=workspace, provider="openai", api_key="sk-ws-own-0002")
    settings.IOFOLD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    choice = resolve_provider(workspace=workspace)
    assert (choice.provider, choice.api_key) == ("offline", "")
