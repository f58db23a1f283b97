"""The profile page: a user changes their name outside the admin."""

from django.urls import reverse

PROFILE = "/accounts/profile/"


def test_the_user_menu_leads_to_a_profile_page_that_saves_the_name(login, owner, workspace):
    client = login(owner)
    home = client.get(reverse("workspaces:home", args=[workspace.slug])).content.decode()
    assert f'href="{PROFILE}"' in home
    page = client.get(PROFILE)
    html = page.content.decode()
    assert page.status_code == 200
    assert owner.email in html
    assert f'href="{reverse("account_change_password")}"' in html
    assert f'href="{reverse("account_email")}"' in html
    response = client.post(PROFILE, {"name": "  Ada Lovelace "}, follow=True)
    assert "Profile saved." in response.content.decode()
    owner.refresh_from_db()
    assert owner.name == "Ada Lovelace"
    assert 'value="Ada Lovelace"' in client.get(PROFILE).content.decode()


def test_the_email_is_shown_not_edited(login, owner):
    client = login(owner)
    client.post(PROFILE, {"name": "Ada", "email": "other@example.com"})
    owner.refresh_from_db()
    assert owner.email == "owner@acme.test" and owner.name == "Ada"
    assert 'name="email"' not in client.get(PROFILE).content.decode()


def test_a_refused_name_shows_the_form_again_with_the_input(login, owner):
    client = login(owner)
    owner.name = "Before"
    owner.save()
    for typed, error in [
        ("x" * 151, "A name is at most 150 characters."),
        ("Ada\x00Lovelace", "Null characters are not allowed."),
    ]:
        page = client.post(PROFILE, {"name": typed})
        html = page.content.decode()
        assert page.status_code == 400
        assert error in html
        if "\x00" not in typed:
            assert f'value="{typed}"' in html
    owner.refresh_from_db()
    assert owner.name == "Before"


def test_the_service_refuses_a_nul_even_without_the_form(owner):
    import pytest

    from accounts.exceptions import AccountError
    from accounts.services import update_profile

    with pytest.raises(AccountError, match="NUL"):
        update_profile(user=owner, name="Ada\x00")


def test_the_profile_needs_a_login(client, db):
    response = client.get(PROFILE)
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))
