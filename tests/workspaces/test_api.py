"""API authentication: bearer tokens bound to one workspace, sessions naming a workspace."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from workspaces.models import ApiToken
from workspaces.services import issue_token, revoke_token


@pytest.fixture
def token(workspace, owner):
    return issue_token(workspace=workspace, name="ci", created_by=owner, role="member")


def _members(api_client, **headers):
    return api_client.get(reverse("api-members"), headers=headers)


def _emails(response):
    return sorted(row["email"] for row in response.json()["results"])


def test_valid_token_lists_its_workspace_members(api_client, token, member, outsider):
    _, raw = token
    response = _members(api_client, Authorization=f"Bearer {raw}")
    assert response.status_code == 200
    assert _emails(response) == ["member@acme.test", "owner@acme.test"]


def test_token_is_bound_to_its_workspace(api_client, token, outsider):
    _, raw = token
    # Naming another workspace does not move a token out of its own.
    response = _members(api_client, Authorization=f"Bearer {raw}", X_Workspace="globex")
    assert _emails(response) == ["owner@acme.test"]
    listed = api_client.get(reverse("api-workspaces"), headers={"Authorization": f"Bearer {raw}"})
    assert [w["slug"] for w in listed.json()["results"]] == ["acme"]


def test_revoked_token_is_refused(api_client, token):
    row, raw = token
    revoke_token(token=row)
    response = _members(api_client, Authorization=f"Bearer {raw}")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer iof_a b", "Bearer not-a-token", "Bearer iof_000000000000wrongsecret"],
)
def test_malformed_or_unknown_token_is_refused(api_client, token, header):
    response = _members(api_client, Authorization=header)
    assert response.status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_the_bearer_scheme_is_read_whatever_its_case(api_client, token, scheme):
    """An HTTP authentication scheme is case-insensitive (RFC 9110, 11.1): a client that
    sent ``bearer iof_...`` was told it had sent no credentials at all."""
    _, raw = token
    response = _members(api_client, Authorization=f"{scheme} {raw}")
    assert response.status_code == 200


def test_tampered_secret_with_a_real_lookup_is_refused(api_client, token):
    _, raw = token
    response = _members(api_client, Authorization=f"Bearer {raw[:-2]}xx")
    assert response.status_code == 401


def test_anonymous_request_is_refused(api_client, db):
    assert _members(api_client).status_code in (401, 403)


def test_last_used_at_is_recorded(api_client, token):
    row, raw = token
    assert row.last_used_at is None
    _members(api_client, Authorization=f"Bearer {raw}")
    row.refresh_from_db()
    assert row.last_used_at is not None
    # Within a minute it is not rewritten on every request...
    first = row.last_used_at
    _members(api_client, Authorization=f"Bearer {raw}")
    row.refresh_from_db()
    assert row.last_used_at == first
    # ...but it is after that.
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now() - timedelta(minutes=5))
    _members(api_client, Authorization=f"Bearer {raw}")
    row.refresh_from_db()
    assert row.last_used_at > first


def test_token_of_a_removed_creator_stops_working(api_client, workspace, owner, member):
    from workspaces.models import Membership
    from workspaces.services import remove_member

    _, raw = issue_token(workspace=workspace, name="ci", created_by=member, role="member")
    remove_member(membership=Membership.objects.get(workspace=workspace, user=member))
    assert _members(api_client, Authorization=f"Bearer {raw}").status_code == 401


def _create_eval_set(api_client, raw, name="Tone"):
    return api_client.post(
        reverse("api-eval-sets"),
        {"name": name, "criteria": "Polite replies"},
        format="json",
        headers={"Authorization": f"Bearer {raw}"},
    )


def test_token_of_a_demoted_creator_grants_only_their_new_role(
    api_client, workspace, owner, admin_user
):
    """An admin token made by an admin who is now a viewer can read but no longer write."""
    from workspaces.models import Membership
    from workspaces.services import change_role

    _, raw = issue_token(workspace=workspace, name="ci", created_by=admin_user, role="admin")
    assert _create_eval_set(api_client, raw).status_code == 201

    change_role(membership=Membership.objects.get(user=admin_user), role="viewer")

    assert _create_eval_set(api_client, raw).status_code == 403
    assert _members(api_client, Authorization=f"Bearer {raw}").status_code == 200
    # Promoted again, the token is back to its own role, never above it.
    change_role(membership=Membership.objects.get(user=admin_user), role="owner")
    assert _create_eval_set(api_client, raw, name="Tone 2").status_code == 201


def test_token_stops_working_once_its_creator_is_no_longer_a_member(
    api_client, workspace, owner, admin_user
):
    """However the membership went (here deleted in the Django admin), the token is refused."""
    from workspaces.models import Membership

    _, raw = issue_token(workspace=workspace, name="ci", created_by=admin_user, role="member")
    Membership.objects.filter(user=admin_user).delete()
    response = _members(api_client, Authorization=f"Bearer {raw}")
    assert response.status_code == 401


def test_token_of_a_deactivated_creator_is_refused(api_client, workspace, owner, admin_user):
    _, raw = issue_token(workspace=workspace, name="ci", created_by=admin_user, role="member")
    admin_user.is_active = False
    admin_user.save()
    assert _members(api_client, Authorization=f"Bearer {raw}").status_code == 401


def test_token_of_a_workspace_being_deleted_is_refused(api_client, workspace, owner, admin_user):
    from workspaces.models import Workspace

    _, raw = issue_token(workspace=workspace, name="ci", created_by=admin_user, role="member")
    assert _members(api_client, Authorization=f"Bearer {raw}").status_code == 200
    Workspace.objects.filter(pk=workspace.pk).update(deletion_requested_at=timezone.now())
    assert _members(api_client, Authorization=f"Bearer {raw}").status_code == 401


def test_leaving_a_workspace_revokes_the_tokens_one_made_there(
    api_client, workspace, owner, admin_user
):
    from workspaces.models import Membership
    from workspaces.services import leave_workspace

    row, raw = issue_token(workspace=workspace, name="ci", created_by=admin_user, role="member")
    leave_workspace(membership=Membership.objects.get(user=admin_user))
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert _members(api_client, Authorization=f"Bearer {raw}").status_code == 401


def test_session_names_the_workspace_with_a_header(api_client, owner, outsider):
    api_client.force_login(owner)
    response = _members(api_client, X_Workspace="acme")
    assert response.status_code == 200
    assert _emails(response) == ["owner@acme.test"]


def test_session_cannot_name_a_workspace_it_is_not_in(api_client, owner, outsider):
    api_client.force_login(owner)
    assert _members(api_client, X_Workspace="globex").status_code == 404


def test_session_with_several_workspaces_must_name_one(api_client, owner, outsider):
    from tests.factories import MembershipFactory

    MembershipFactory(workspace=outsider.memberships.get().workspace, user=owner)
    api_client.force_login(owner)
    response = _members(api_client)
    assert response.status_code == 400
    assert "X-Workspace" in str(response.json())


def test_session_with_one_workspace_uses_it(api_client, owner):
    api_client.force_login(owner)
    assert _emails(_members(api_client)) == ["owner@acme.test"]


def test_schema_and_docs_are_published(client, db):
    schema = client.get("/api/schema/", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    body = schema.json() if schema["Content-Type"].startswith("application/json") else None
    text = schema.content.decode()
    assert "/api/v1/members/" in text
    assert "workspaceToken" in text
    if body is not None:
        assert body["components"]["securitySchemes"]["workspaceToken"]["scheme"] == "bearer"
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
