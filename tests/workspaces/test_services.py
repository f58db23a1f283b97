"""Workspace services: creation, invitations, roles, the last owner, API tokens, deletion."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tests.factories import EmailAddressFactory, UserFactory
from workspaces import services
from workspaces.exceptions import InvitationForAnotherAddress, WorkspaceError
from workspaces.models import ApiToken, Invitation, Membership, Workspace, digest_secret


def _raw_token(invitation_email):
    """Return the raw invitation token from the emailed link."""
    message = next(m for m in reversed(mail.outbox) if invitation_email in m.to)
    link = next(word for word in message.body.split() if "/invitations/" in word)
    return link.rstrip("/").rsplit("/", 1)[1]


@pytest.fixture
def invite(workspace, owner, django_capture_on_commit_callbacks):
    def _invite(email="new@example.com", role="member"):
        with django_capture_on_commit_callbacks(execute=True):
            invitation = services.invite_member(
                workspace=workspace,
                email=email,
                role=role,
                invited_by=owner,
                base_url="http://testserver",
            )
        return invitation, _raw_token(email.lower())

    return _invite


def _verified_user(email="new@example.com"):
    """Return a user who has confirmed ``email``, as sign-up makes them do."""
    return EmailAddressFactory(user=UserFactory(email=email)).user


def test_create_workspace_makes_the_creator_owner(db):
    user = UserFactory()
    workspace = services.create_workspace(name="  Support bot ", owner=user)
    assert workspace.name == "Support bot"
    assert workspace.slug == "support-bot"
    assert Membership.objects.get(workspace=workspace, user=user).role == "owner"


def test_workspace_slugs_stay_unique(db):
    user = UserFactory()
    first = services.create_workspace(name="Acme", owner=user)
    second = services.create_workspace(name="Acme", owner=user)
    assert first.slug != second.slug
    assert second.slug.startswith("acme-")


def test_workspace_needs_a_name(db):
    with pytest.raises(WorkspaceError):
        services.create_workspace(name="   ", owner=UserFactory())


def test_invitation_emails_a_link_and_stores_only_a_digest(invite, workspace):
    invitation, raw = invite("New@Example.com", "viewer")
    assert invitation.email == "new@example.com"
    assert invitation.token_digest == digest_secret(raw)
    assert raw not in invitation.token_digest
    assert not Invitation.objects.filter(token_digest=raw).exists()
    assert workspace.name in mail.outbox[0].subject
    assert invitation.is_pending


def test_the_invitation_email_shows_the_workspace_name_as_typed(invite, workspace, owner):
    # A plain-text email: "O'Brien & Co" must not arrive as "O&#x27;Brien &amp; Co".
    workspace.name = "O'Brien & Co <support>"
    workspace.save(update_fields=["name"])
    invite("new@example.com")
    body = mail.outbox[-1].body
    assert '"O\'Brien & Co <support>"' in body
    assert "&" + "amp;" not in body and "&#x27;" not in body


def test_accepting_an_invitation_joins_with_its_role(invite, workspace):
    invitation, raw = invite(role="viewer")
    user = _verified_user()
    membership = services.accept_invitation(token=raw, user=user)
    assert membership.workspace == workspace
    assert membership.role == "viewer"
    invitation.refresh_from_db()
    assert invitation.accepted_by == user
    assert invitation.accepted_at is not None


def test_an_invitation_works_only_once(invite):
    _, raw = invite()
    services.accept_invitation(token=raw, user=_verified_user())
    with pytest.raises(WorkspaceError, match="already been used"):
        services.accept_invitation(token=raw, user=UserFactory())


def test_an_expired_invitation_is_refused(invite):
    invitation, raw = invite()
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(WorkspaceError, match="expired"):
        services.accept_invitation(token=raw, user=UserFactory())


def test_an_unknown_invitation_token_is_refused(db):
    with pytest.raises(WorkspaceError, match="not valid"):
        services.find_invitation(token="made-up")


def test_existing_members_cannot_be_invited_again(workspace, owner, member):
    with pytest.raises(WorkspaceError, match="already a member"):
        services.invite_member(
            workspace=workspace, email="MEMBER@acme.test", role="member", invited_by=owner
        )


def test_invitation_role_must_exist(workspace, owner):
    with pytest.raises(WorkspaceError):
        services.invite_member(workspace=workspace, email="x@y.test", role="god", invited_by=owner)


def test_accepting_as_an_existing_member_keeps_one_membership(invite, workspace, member):
    _, raw = invite(email="someone@example.com", role="admin")
    EmailAddressFactory(user=member, email="someone@example.com", primary=False)
    membership = services.accept_invitation(token=raw, user=member)
    assert membership.role == "member"
    assert Membership.objects.filter(workspace=workspace, user=member).count() == 1


def test_only_a_user_who_verified_the_invited_address_can_accept(invite, workspace, outsider):
    invitation, raw = invite()
    unverified = UserFactory(email="new@example.com")
    EmailAddressFactory(user=unverified, verified=False)
    for user in [outsider, unverified]:
        with pytest.raises(InvitationForAnotherAddress, match="for new@example.com"):
            services.accept_invitation(token=raw, user=user)
    assert not Membership.objects.for_workspace(workspace).exclude(role="owner").exists()
    invitation.refresh_from_db()
    assert invitation.is_pending


def test_inviting_an_address_again_refreshes_its_open_invitation(invite, workspace):
    first, first_raw = invite("new@example.com", "viewer")
    Invitation.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(days=1))
    second, second_raw = invite("NEW@example.com", "admin")

    assert second.pk == first.pk
    assert Invitation.objects.for_workspace(workspace).count() == 1
    assert len(mail.outbox) == 2  # sent again...
    second.refresh_from_db()
    assert second.role == "admin"  # ...with the new role, a fresh expiry and a new link
    assert second.is_pending
    with pytest.raises(WorkspaceError, match="not valid"):
        services.find_invitation(token=first_raw)

    services.accept_invitation(token=second_raw, user=_verified_user())
    assert not Invitation.objects.for_workspace(workspace).pending().exists()


def test_an_accepted_invitation_does_not_block_a_new_one(invite, workspace, owner):
    _, raw = invite()
    user = _verified_user()
    services.accept_invitation(token=raw, user=user)
    services.remove_member(membership=Membership.objects.get(workspace=workspace, user=user))
    invitation, _ = invite()
    assert invitation.is_pending
    assert Invitation.objects.for_workspace(workspace).count() == 2


def test_joining_clears_open_invitations_to_the_users_other_addresses(invite, workspace):
    _, raw = invite("new@example.com")
    invite("new@work.example")
    user = _verified_user()
    EmailAddressFactory(user=user, email="new@work.example", primary=False)
    services.accept_invitation(token=raw, user=user)
    assert not Invitation.objects.for_workspace(workspace).pending().exists()


def test_invitation_link_is_under_site_url_when_set(
    workspace, owner, settings, django_capture_on_commit_callbacks
):
    for site_url, expected in [
        ("", "http://localhost:9123/invitations/"),
        ("https://iofold.example.com/", "https://iofold.example.com/invitations/"),
    ]:
        settings.SITE_URL = site_url
        with django_capture_on_commit_callbacks(execute=True):
            services.invite_member(
                workspace=workspace,
                email="new@example.com",
                role="member",
                invited_by=owner,
                base_url="http://localhost:9123/",
            )
        assert expected in mail.outbox[-1].body


def test_a_new_user_joins_the_workspaces_that_invited_their_verified_address(
    invite, workspace, other_workspace, outsider
):
    invite("new@example.com", "viewer")
    user = _verified_user()
    joined = services.join_invited_workspaces(user=user, email="new@example.com")
    assert [(m.workspace, m.role) for m in joined] == [(workspace, "viewer")]
    assert list(Workspace.objects.for_user(user)) == [workspace]


def test_a_new_user_whose_invitation_was_withdrawn_gets_a_workspace_of_their_own(invite, workspace):
    invitation, _ = invite("new@example.com")
    invitation.delete()
    user = _verified_user()
    assert services.join_invited_workspaces(user=user, email="new@example.com") == []
    assert [w.name for w in Workspace.objects.for_user(user)] == ["new's workspace"]


def test_an_existing_user_verifying_an_address_joins_nothing_by_itself(invite, outsider):
    invite("outsider@globex.test")
    EmailAddressFactory(user=outsider)
    assert services.join_invited_workspaces(user=outsider, email="outsider@globex.test") == []
    assert Workspace.objects.for_user(outsider).count() == 1


def test_change_role(workspace, owner, member):
    membership = Membership.objects.get(workspace=workspace, user=member)
    services.change_role(membership=membership, role="admin")
    membership.refresh_from_db()
    assert membership.role == "admin"


def test_unknown_role_is_refused(workspace, owner, member):
    membership = Membership.objects.get(workspace=workspace, user=member)
    with pytest.raises(WorkspaceError):
        services.change_role(membership=membership, role="superuser")


def test_last_owner_cannot_be_demoted(workspace, owner):
    membership = Membership.objects.get(workspace=workspace, user=owner)
    with pytest.raises(WorkspaceError, match="at least one owner"):
        services.change_role(membership=membership, role="admin")
    membership.refresh_from_db()
    assert membership.role == "owner"


def test_last_owner_cannot_be_removed(workspace, owner):
    membership = Membership.objects.get(workspace=workspace, user=owner)
    with pytest.raises(WorkspaceError, match="at least one owner"):
        services.remove_member(membership=membership)
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_an_owner_can_leave_when_another_owner_remains(workspace, owner, admin_user):
    services.change_role(
        membership=Membership.objects.get(workspace=workspace, user=admin_user), role="owner"
    )
    services.remove_member(membership=Membership.objects.get(workspace=workspace, user=owner))
    assert not Membership.objects.filter(workspace=workspace, user=owner).exists()


def test_removing_a_member_revokes_their_tokens(workspace, owner, member):
    token, _ = services.issue_token(
        workspace=workspace, name="ci", created_by=member, role="member"
    )
    kept, _ = services.issue_token(workspace=workspace, name="ops", created_by=owner, role="member")
    services.remove_member(membership=Membership.objects.get(workspace=workspace, user=member))
    token.refresh_from_db()
    kept.refresh_from_db()
    assert token.revoked_at is not None
    assert kept.revoked_at is None


def test_issued_token_is_stored_as_digest_not_raw(workspace, owner):
    token, raw = services.issue_token(
        workspace=workspace, name=" CI ", created_by=owner, role="viewer"
    )
    assert raw.startswith(ApiToken.PREFIX)
    assert token.name == "CI"
    assert token.digest == digest_secret(raw)
    assert raw not in token.digest
    assert raw.startswith(f"{ApiToken.PREFIX}{token.lookup}")
    assert raw not in str(token)
    assert token.matches(raw)
    assert not token.matches(raw + "x")
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert raw not in {str(value) for value in row.values()}


@pytest.mark.parametrize("role", ["owner", "root"])
def test_token_role_is_admin_member_or_viewer(workspace, owner, role):
    with pytest.raises(WorkspaceError):
        services.issue_token(workspace=workspace, name="ci", created_by=owner, role=role)


def test_token_needs_a_name(workspace, owner):
    with pytest.raises(WorkspaceError):
        services.issue_token(workspace=workspace, name=" ", created_by=owner, role="member")


def test_revoking_a_token_is_idempotent(workspace, owner):
    token, _ = services.issue_token(workspace=workspace, name="ci", created_by=owner, role="member")
    services.revoke_token(token=token)
    first = token.revoked_at
    services.revoke_token(token=token)
    token.refresh_from_db()
    assert first is not None
    assert token.revoked_at == first
    assert not ApiToken.objects.active().filter(pk=token.pk).exists()


def test_rename_keeps_the_slug(workspace, owner):
    services.rename_workspace(workspace=workspace, name="Acme Corp")
    workspace.refresh_from_db()
    assert (workspace.name, workspace.slug) == ("Acme Corp", "acme")


def test_deletion_request_hides_the_workspace_and_enqueues_once(
    workspace, owner, django_capture_on_commit_callbacks, monkeypatch
):
    from workspaces import tasks

    queued = []
    monkeypatch.setattr(tasks.delete_workspace_task, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        services.request_workspace_deletion(workspace=workspace)
        services.request_workspace_deletion(workspace=workspace)
    assert queued == [workspace.pk]
    assert not Workspace.objects.for_user(owner).exists()
    assert services.delete_workspace(workspace_id=workspace.pk)
    assert not Workspace.objects.filter(pk=workspace.pk).exists()


def test_delete_workspace_refuses_one_not_marked_for_deletion(workspace):
    assert not services.delete_workspace(workspace_id=workspace.pk)
    assert Workspace.objects.filter(pk=workspace.pk).exists()
