"""A session that ended while a page was open: the page's next htmx request takes the
person to the sign-in page as a whole page, coming back to the page they were on."""

from urllib.parse import quote

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_a_signed_out_htmx_request_loads_the_sign_in_page_whole(client, workspace):
    page = reverse("traces:list", args=[workspace.slug])
    fragment = reverse("workspaces:members", args=[workspace.slug])

    response = client.get(
        fragment, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{page}"
    )

    assert response.status_code == 200  # htmx acts on HX-Redirect only in a 2xx
    assert "Location" not in response
    assert response["HX-Redirect"] == f"{reverse('account_login')}?next={quote(page)}"
    assert not response.content  # nothing to swap into the fragment


def test_a_signed_out_page_load_is_still_a_plain_redirect(client, workspace):
    page = reverse("traces:list", args=[workspace.slug])

    response = client.get(page)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={quote(page)}"


def test_an_htmx_request_from_another_site_goes_back_to_the_home_page(client, workspace):
    fragment = reverse("workspaces:members", args=[workspace.slug])

    response = client.get(
        fragment, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://elsewhere.test/x"
    )

    assert response["HX-Redirect"] == f"{reverse('account_login')}?next=/"
