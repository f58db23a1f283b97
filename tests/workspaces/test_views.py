"""Workspace pages, thinly: the invitation link, creating and deleting a workspace."""

from datetime import timedelta

from django.core import mail
from django.urls import reverse
from django.utils import timezone

from tests.factories import EmailAddressFactory, UserFactory
from tests.workspaces.helpers import invitation_path, invite
from workspaces.models import ApiToken, Invitation, Membership, Workspace
from workspaces.services import (
    has_open_invitation,
    issue_token,
    request_workspace_deletion,
)


def test_invitation_link_offers_sign_up_to_a_visitor(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    path = invitation_path(workspace, owner, django_capture_on_commit_callbacks)
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "owner@acme.test invited <strong>new@example.com</strong>" in html
    assert f"{reverse('account_signup')}?next={path}" in html


def test_visitor_cannot_accept_without_logging_in(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    path = invitation_path(workspace, owner, django_capture_on_commit_callbacks)
    response = client.post(path)
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))
    assert Membership.objects.for_workspace(workspace).count() == 1


def test_logged_in_user_joins_through_the_link(
    client, workspace, owner, outsider, django_capture_on_commit_callbacks
):
    path = invitation_path(
        workspace, owner, django_capture_on_commit_callbacks, email="outsider@globex.test"
    )
    EmailAddressFactory(user=outsider)
    client.force_login(outsider)
    response = client.post(path)
    assert response.url == reverse("workspaces:home", kwargs={"slug": "acme"})
    assert Membership.objects.get(workspace=workspace, user=outsider).role == "member"
    # The link is spent: it now just leads its user into the workspace...
    assert client.get(path).url == reverse("workspaces:home", kwargs={"slug": "acme"})
    # ...and is no use to anyone else.
    client.force_login(owner)
    assert client.get(path).status_code == 404


def test_someone_else_is_told_whom_the_invitation_is_for_and_cannot_join(
    client, workspace, owner, outsider, django_capture_on_commit_callbacks
):
    path = invitation_path(workspace, owner, django_capture_on_commit_callbacks)
    EmailAddressFactory(user=outsider)
    client.force_login(outsider)

    page = client.get(path)
    assert page.status_code == 403
    html = page.content.decode()
    assert "This invitation is for <strong>new@example.com</strong>" in html
    assert "you are logged in as outsider@globex.test" in html
    assert "Join Acme</button>" not in html

    assert client.post(path).status_code == 403
    assert not Membership.objects.filter(workspace=workspace, user=outsider).exists()
    assert Invitation.objects.for_workspace(workspace).pending().count() == 1


def test_the_invited_address_must_be_confirmed_before_joining(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    path = invitation_path(workspace, owner, django_capture_on_commit_callbacks)
    invitee = UserFactory(email="new@example.com")
    EmailAddressFactory(user=invitee, verified=False)
    client.force_login(invitee)

    page = client.get(path)
    assert page.status_code == 403
    assert "which you have not confirmed yet" in page.content.decode()
    assert client.post(path).status_code == 403
    assert not Membership.objects.filter(workspace=workspace, user=invitee).exists()


def test_invitation_links_take_the_host_of_the_inviting_page(
    client, workspace, owner, settings, django_capture_on_commit_callbacks
):
    """With no SITE_URL (bin/run on PORT=9123), the emailed link points where the app runs."""
    settings.SITE_URL = ""
    client.force_login(owner)
    url = reverse("workspaces:invite", kwargs={"slug": "acme"})
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"email": "new@example.com", "role": "member"}, HTTP_HOST="localhost:9123")
    assert "http://localhost:9123/invitations/" in mail.outbox[-1].body


def test_inviting_an_address_twice_lists_one_pending_invitation(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    url = reverse("workspaces:invite", kwargs={"slug": "acme"})
    for role in ["member", "admin"]:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url, {"email": "new@example.com", "role": role})
    assert len(mail.outbox) == 2
    html = client.get(reverse("workspaces:members", kwargs={"slug": "acme"})).content.decode()
    assert html.count("<tr><td>new@example.com</td>") == 1
    assert "<td>Admin</td>" in html


def test_unknown_invitation_link_is_404(client, db):
    response = client.get("/invitations/not-a-real-token/")
    assert response.status_code == 404
    assert b"not valid" in response.content


def test_create_workspace_from_the_list(client, owner):
    client.force_login(owner)
    response = client.post(reverse("workspaces:list"), {"name": "Support bot"})
    workspace = Workspace.objects.get(name="Support bot")
    assert response.url == workspace.get_absolute_url()
    assert Membership.objects.get(workspace=workspace, user=owner).role == "owner"


def test_blank_workspace_name_is_a_form_error(client, owner):
    client.force_login(owner)
    response = client.post(reverse("workspaces:list"), {"name": "   "})
    assert response.status_code == 400
    assert Workspace.objects.count() == 1


def test_delete_needs_the_slug_typed(client, workspace, owner):
    client.force_login(owner)
    url = reverse("workspaces:delete", kwargs={"slug": "acme"})
    client.post(url, {"confirm": "wrong"})
    assert Workspace.objects.for_user(owner).exists()
    client.post(url, {"confirm": "acme"})
    assert not Workspace.objects.for_user(owner).exists()


def test_only_owners_delete(client, workspace, owner, admin_user):
    client.force_login(admin_user)
    url = reverse("workspaces:delete", kwargs={"slug": "acme"})
    assert client.post(url, {"confirm": "acme"}).status_code == 403
    assert Workspace.objects.for_user(owner).exists()


def test_switching_remembers_the_last_workspace(client, workspace, owner, other_workspace):
    Membership.objects.create(workspace=other_workspace, user=owner, role="member")
    client.force_login(owner)
    client.get(reverse("workspaces:home", kwargs={"slug": "globex"}))
    assert client.get("/").url == "/w/globex/"
    client.get(reverse("workspaces:home", kwargs={"slug": "acme"}))
    assert client.get("/").url == "/w/acme/"


def test_a_viewer_can_leave_and_lands_in_their_other_workspace(
    client, workspace, owner, viewer, other_workspace
):
    Membership.objects.create(workspace=other_workspace, user=viewer, role="owner")
    client.force_login(viewer)
    client.get(reverse("workspaces:home", kwargs={"slug": workspace.slug}))  # last visited

    url = reverse("workspaces:leave", kwargs={"slug": workspace.slug})
    response = client.post(url, {"confirmed": "yes"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse(
        "workspaces:home", kwargs={"slug": other_workspace.slug}
    )
    assert "You left “Acme”." in response.content.decode()
    assert not Membership.objects.filter(workspace=workspace, user=viewer).exists()
    assert Membership.objects.filter(workspace=workspace, user=owner).exists()
    gone = client.get(reverse("workspaces:home", kwargs={"slug": workspace.slug}))
    assert gone.status_code == 404


def test_the_only_owner_cannot_leave(client, workspace, owner, member):
    client.force_login(owner)
    url = reverse("workspaces:leave", kwargs={"slug": workspace.slug})
    page = client.get(reverse("workspaces:members", kwargs={"slug": workspace.slug}))
    assert url not in page.content.decode()
    assert "You are the only owner: make someone else an owner to leave." in page.content.decode()

    response = client.post(url, {"confirmed": "yes"}, follow=True)

    assert "You are the only owner. Make another member an owner first" in (
        response.content.decode()
    )
    assert Membership.objects.filter(workspace=workspace, user=owner, role="owner").exists()


def test_every_member_sees_a_leave_button_for_themselves_only(client, workspace, owner, member):
    client.force_login(member)
    html = client.get(reverse("workspaces:members", kwargs={"slug": workspace.slug})).content
    html = html.decode()
    assert reverse("workspaces:leave", kwargs={"slug": workspace.slug}) in html
    assert "/remove/" not in html


def _switcher(html: str) -> str:
    """The switcher's list (under the summary, which names the current workspace)."""
    start = html.index("<ul>", html.index('data-testid="workspace-switcher"'))
    return html[start : html.index("</details>", start)]


def test_the_switcher_lists_the_users_workspaces_by_name_and_ticks_the_current_one(
    client, workspace, owner, other_workspace, outsider
):
    """The membership lookup of a workspace page also feeds the switcher: it must list all
    the user's workspaces (and no one else's), not only the one in the URL."""
    third = Workspace.objects.create(name="Beta", slug="beta")
    Membership.objects.create(workspace=third, user=owner, role="viewer")
    gone = Workspace.objects.create(name="Aardvark", slug="aardvark")
    Membership.objects.create(workspace=gone, user=owner, role="owner")
    gone.deletion_requested_at = gone.created_at
    gone.save(update_fields=["deletion_requested_at"])
    client.force_login(owner)

    switcher = _switcher(client.get(reverse("traces:list", args=["beta"])).content.decode())

    assert [name for name in ("Aardvark", "Acme", "Beta", "Globex") if name in switcher] == [
        "Acme",
        "Beta",
    ]
    assert switcher.index("Acme") < switcher.index("Beta")
    assert "✓ Beta" in switcher and "✓ Acme" not in switcher


def test_a_workspace_joined_shows_in_the_switcher_on_the_next_page(
    client, workspace, owner, other_workspace
):
    client.force_login(owner)
    url = reverse("traces:list", args=[workspace.slug])
    assert "Globex" not in _switcher(client.get(url).content.decode())

    Membership.objects.create(workspace=other_workspace, user=owner, role="member")
    other_workspace.name = "Globex Corp"
    other_workspace.save(update_fields=["name"])

    assert "Globex Corp" in _switcher(client.get(url).content.decode())


def test_the_navigation_marks_the_page_the_user_is_on(client, workspace, owner):
    client.force_login(owner)

    def current(url):
        html = client.get(url).content.decode()
        return [
            line.split(">", 1)[1].split("<", 1)[0]
            for line in html.split("<a ")
            if 'aria-current="page"' in line.split(">", 1)[0]
        ]

    assert current(reverse("traces:list", args=[workspace.slug])) == ["Traces"]
    assert current(reverse("traces:evalset_list", args=[workspace.slug])) == ["Eval sets"]
    assert current(reverse("evals:settings", args=[workspace.slug])) == ["Eval settings"]
    assert current(reverse("workspaces:settings", args=[workspace.slug])) == ["Settings"]
    assert current(reverse("integrations:list", args=[workspace.slug])) == ["Integrations"]


def test_a_token_used_seconds_ago_was_used_just_now(client, workspace, owner):
    fresh, _ = issue_token(workspace=workspace, name="ci", created_by=owner, role="member")
    older, _ = issue_token(workspace=workspace, name="cron", created_by=owner, role="member")
    now = timezone.now()
    ApiToken.objects.filter(pk=fresh.pk).update(last_used_at=now - timedelta(seconds=20))
    ApiToken.objects.filter(pk=older.pk).update(last_used_at=now - timedelta(minutes=3))
    client.force_login(owner)

    page = client.get(reverse("workspaces:tokens", args=[workspace.slug])).content.decode()

    assert "just now" in page
    assert "3\xa0minutes ago" in page
    assert "0\xa0minutes" not in page


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_an_admin_cannot_make_themselves_owner(client, workspace, owner, admin_user):
    """An owner may delete the workspace; an admin promoting themselves could too."""
    mine = Membership.objects.get(workspace=workspace, user=admin_user)
    client.force_login(admin_user)
    url = reverse("workspaces:change_role", args=["acme", mine.pk])
    response = client.post(url, {"role": "owner"}, follow=True)
    assert Membership.objects.get(pk=mine.pk).role == "admin"
    assert "Only an owner can make someone an owner" in _messages(response)[0]
    # ...and the page offers an admin no Owner option.
    html = client.get(reverse("workspaces:members", args=["acme"])).content.decode()
    assert 'value="owner"' not in html


def test_an_admin_cannot_demote_or_remove_an_owner(client, workspace, owner, admin_user, member):
    Membership.objects.filter(user=member).update(
        role="owner"
    )  # two owners: the last-owner rule is not what stops it
    client.force_login(admin_user)
    target = Membership.objects.get(workspace=workspace, user=owner)
    client.post(reverse("workspaces:change_role", args=["acme", target.pk]), {"role": "viewer"})
    client.post(reverse("workspaces:remove_member", args=["acme", target.pk]), {"confirmed": "yes"})
    assert Membership.objects.get(pk=target.pk).role == "owner"


def test_an_admin_cannot_invite_an_owner(client, workspace, owner, admin_user):
    client.force_login(admin_user)
    url = reverse("workspaces:invite", args=["acme"])
    response = client.post(url, {"email": "new@example.com", "role": "owner"}, follow=True)
    assert not Invitation.objects.filter(email="new@example.com").exists()
    assert "Only an owner" in _messages(response)[0]


def test_an_owner_still_makes_owners(client, workspace, owner, admin_user):
    client.force_login(owner)
    target = Membership.objects.get(workspace=workspace, user=admin_user)
    client.post(reverse("workspaces:change_role", args=["acme", target.pk]), {"role": "owner"})
    assert Membership.objects.get(pk=target.pk).role == "owner"


def test_a_refused_invitation_or_role_change_says_which_field_is_wrong(client, workspace, owner):
    client.force_login(owner)
    invite = reverse("workspaces:invite", args=["acme"])
    response = client.post(invite, {"email": "new@example.com", "role": "boss"}, follow=True)
    assert _messages(response) == [
        "Role: Select a valid choice. boss is not one of the available choices."
    ]
    response = client.post(invite, {"email": "nope", "role": "member"}, follow=True)
    assert _messages(response) == ["Email: Enter a valid email address."]
    mine = Membership.objects.get(workspace=workspace, user=owner)
    url = reverse("workspaces:change_role", args=["acme", mine.pk])
    response = client.post(url, {"role": ""}, follow=True)
    assert _messages(response) == ["Role: This field is required."]


def test_the_page_showing_a_new_token_is_not_cached(client, workspace, owner):
    client.force_login(owner)
    response = client.post(
        reverse("workspaces:tokens", args=["acme"]), {"name": "ci", "role": "member"}, follow=True
    )
    assert 'data-testid="new-token"' in response.content.decode()
    # Neither the browser (back button) nor a proxy keeps the page with the secret.
    assert "no-store" in response["Cache-Control"]


def test_a_new_token_is_shown_once_and_a_refresh_makes_no_second_one(client, workspace, owner):
    client.force_login(owner)
    url = reverse("workspaces:tokens", args=["acme"])
    response = client.post(url, {"name": "ci", "role": "member"})
    # Post/Redirect/Get: refreshing what the browser shows next re-sends a GET, not the form.
    assert response.status_code == 302
    assert response.url == url
    shown = client.get(url).content.decode()
    token = ApiToken.objects.get(workspace=workspace)
    secret = shown.split('<p class="secret">', 1)[1].split("</p>", 1)[0]
    assert token.matches(secret)
    again = client.get(url).content.decode()
    assert 'data-testid="new-token"' not in again
    assert secret not in again
    assert ApiToken.objects.filter(workspace=workspace).count() == 1


def test_a_token_form_with_a_problem_keeps_what_was_typed(client, workspace, owner):
    client.force_login(owner)
    url = reverse("workspaces:tokens", args=["acme"])
    response = client.post(url, {"name": "nightly eval job", "role": "owner"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="nightly eval job"' in html
    assert "Select a valid choice." in html
    assert not ApiToken.objects.filter(workspace=workspace).exists()


def test_an_invitation_to_a_workspace_being_deleted_offers_nothing_to_join(
    client, workspace, owner, outsider, django_capture_on_commit_callbacks
):
    path = invitation_path(
        workspace, owner, django_capture_on_commit_callbacks, email="outsider@globex.test"
    )
    with django_capture_on_commit_callbacks(execute=False):
        request_workspace_deletion(workspace=workspace)
    EmailAddressFactory(user=outsider)
    client.force_login(outsider)
    page = client.get(path)
    assert page.status_code == 404
    assert "This workspace is being deleted" in page.content.decode()
    client.post(path)
    assert not Membership.objects.filter(workspace=workspace, user=outsider).exists()
    # ...and a sign-up with that address is not held back waiting for it.
    assert not has_open_invitation(email="outsider@globex.test")


def test_revoking_a_token_asks_first(client, workspace, owner):
    """Revoking cannot be undone and breaks whatever uses the token, as removing a member."""
    issue_token(workspace=workspace, name="CI pipeline", created_by=owner, role="member")
    client.force_login(owner)
    html = client.get(reverse("workspaces:tokens", args=["acme"])).content.decode()
    assert 'data-confirm="Revoke CI pipeline? Whatever uses it stops working' in html


def test_a_refused_invitation_keeps_what_was_typed(client, workspace, owner, member):
    client.force_login(owner)
    url = reverse("workspaces:invite", args=["acme"])
    response = client.post(url, {"email": "member@acme.test", "role": "viewer"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "member@acme.test is already a member of this workspace." in html
    assert 'value="member@acme.test"' in html
    assert '<option value="viewer" selected>' in html


def test_a_refused_invitation_marks_the_field_that_was_wrong(client, workspace, owner):
    client.force_login(owner)
    url = reverse("workspaces:invite", args=["acme"])
    html = client.post(url, {"email": "nope", "role": "member"}).content.decode()
    email = html[html.index('name="email"') :].split(">", 1)[0]
    assert 'aria-invalid="true"' in email and 'aria-describedby="invite-email-errors"' in email
    assert '<small id="invite-email-errors">Enter a valid email address.</small>' in html
    html = client.post(url, {"email": "new@example.com", "role": "boss"}).content.decode()
    form = html[html.index(f'action="{url}"') :]
    role = form[form.index('name="role"') :].split(">", 1)[0]
    assert 'aria-invalid="true"' in role and "invite-role-errors" in role
    assert 'name="email"' in html and "invite-email-errors" not in html


def test_cancelling_an_invitation_asks_first(client, workspace, owner):
    """Its link stops working at once: a slip of the mouse should not do that."""
    invitation = invite(workspace, owner, "grace@example.com")
    client.force_login(owner)
    members = client.get(reverse("workspaces:members", args=["acme"])).content.decode()
    assert 'data-confirm="Cancel the invitation for grace@example.com?' in members

    url = reverse("workspaces:cancel_invitation", args=["acme", invitation.pk])
    response = client.post(url, {"confirmed": "yes"}, follow=True)
    assert _messages(response) == ["Invitation for grace@example.com cancelled."]
    assert not Invitation.objects.filter(pk=invitation.pk).exists()


def test_opening_the_address_of_a_refused_invitation_leads_to_the_members_page(
    client, workspace, owner
):
    """The page answering a refused invitation stays at its own address; going there
    again (Enter in the address bar, a bookmark) showed a blank page."""
    client.force_login(owner)
    invite = reverse("workspaces:invite", args=["acme"])
    refused = client.post(invite, {"email": "owner@acme.test", "role": "member"})
    assert refused.status_code == 400
    response = client.get(invite)
    assert response.status_code == 302
    assert response.url == reverse("workspaces:members", args=["acme"])


def test_a_new_tokens_secret_not_picked_up_at_once_is_never_shown(
    client, workspace, owner, monkeypatch
):
    """Had the tab closed before the redirect, the secret would show on a later visit."""
    client.force_login(owner)
    url = reverse("workspaces:tokens", args=["acme"])
    client.post(url, {"name": "ci", "role": "member"})
    monkeypatch.setattr("iofold.lib.shown_once.MAX_AGE_SECONDS", -1)  # as if long after
    assert 'data-testid="new-token"' not in client.get(url).content.decode()
    assert "shown_once:" not in str(dict(client.session))


def test_a_new_tokens_secret_waits_in_the_session_encrypted(client, workspace, owner):
    """Sessions are database rows: the secret waiting for its page is no plain text there."""
    client.force_login(owner)
    url = reverse("workspaces:tokens", args=["acme"])
    client.post(url, {"name": "ci", "role": "member"})
    waiting = str(dict(client.session))
    shown = client.get(url).content.decode()
    secret = shown.split('<p class="secret">', 1)[1].split("</p>", 1)[0]
    assert "shown_once:" in waiting
    assert secret not in waiting


def test_invitation_emails_to_one_address_are_rate_limited(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    """Anyone who signs up owns a workspace: re-inviting must not make iofold's mail server
    flood an address (allauth limits its own emails the same way)."""
    client.force_login(owner)
    url = reverse("workspaces:invite", kwargs={"slug": "acme"})
    statuses = []
    for _ in range(6):
        with django_capture_on_commit_callbacks(execute=True):
            statuses.append(
                client.post(url, {"email": "target@example.com", "role": "viewer"}).status_code
            )
    assert statuses == [302, 302, 302, 429, 429, 429]
    assert len(mail.outbox) == 3
    refused = client.post(url, {"email": "target@example.com", "role": "viewer"})
    assert "target@example.com was sent an invitation" in refused.content.decode()
    # Another address is not held up by it.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"email": "other@example.com", "role": "viewer"}).status_code == 302
    assert len(mail.outbox) == 4


def test_one_user_cannot_mail_invitations_without_end(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    url = reverse("workspaces:invite", kwargs={"slug": "acme"})
    with django_capture_on_commit_callbacks(execute=True):
        statuses = [
            client.post(url, {"email": f"n{i}@example.com", "role": "viewer"}).status_code
            for i in range(52)
        ]
    assert statuses.count(302) == 50 and statuses[-2:] == [429, 429]
    assert len(mail.outbox) == 50
    assert Invitation.objects.filter(email="n51@example.com").count() == 0  # nothing half-done
