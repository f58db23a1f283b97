"""A POST-only address opened by hand (address bar, a copied link) is a page saying that it
performs an action, with the way back; still a 405. The API keeps DRF's JSON 405."""

import pytest
from django.urls import reverse

from integrations import services
from tests.test_tenancy import UI_CASES, _ui_url

pytestmark = pytest.mark.django_db

POSTS = [c for c in UI_CASES if c.method == "post"]


def _integration(workspace):
    return services.create_integration(
        workspace=workspace, name="x", host="http://x.test", public_key="pk", secret_key="sk"
    )


def test_opening_sync_now_by_hand_says_it_is_an_action_with_the_way_back(client, owner, workspace):
    integration = _integration(workspace)
    client.force_login(owner)

    response = client.get(reverse("integrations:sync", args=[workspace.slug, integration.pk]))

    page = response.content.decode()
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "This address performs an action" in page
    assert workspace.name in page  # in the layout, with its workspace switcher
    back = reverse("integrations:detail", args=[workspace.slug, integration.pk])
    assert f'href="{back}" data-testid="back-link"' in page


@pytest.mark.parametrize("case", POSTS, ids=str)
def test_every_post_only_address_opened_by_hand_leads_back_to_a_page(
    case, client, workspace, owner
):
    url = _ui_url(case, workspace)
    client.force_login(owner)

    response = client.get(url)

    if response.status_code != 405:
        pytest.skip("the address has a page of its own")
    assert 'data-testid="action-address"' in response.content.decode()
    back = response.context["back_url"]
    assert back != url and url.startswith(back)
    assert client.get(back).status_code == 200


def test_the_api_keeps_drfs_json_405(api_client, owner, workspace):
    integration = _integration(workspace)
    api_client.force_login(owner)

    response = api_client.get(reverse("api-integration-sync", args=[integration.pk]))

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
