"""Memberships come from the cache after a user's first page; a change still counts at once."""

import io

import pytest
from django.core.cache import cache
from django.urls import reverse

from iofold.workspace_data import export_workspace, import_workspace
from workspaces import memberships, services
from workspaces.models import Membership, Workspace

pytestmark = pytest.mark.django_db


def _home(workspace: Workspace) -> str:
    return reverse("workspaces:home", kwargs={"slug": workspace.slug})


def _settings(workspace: Workspace) -> str:
    return reverse("workspaces:settings", kwargs={"slug": workspace.slug})


def test_a_removed_member_is_refused_on_their_next_page(
    client, workspace, owner, member, django_capture_on_commit_callbacks
):
    client.force_login(member)
    assert client.get(_home(workspace)).status_code == 200
    assert client.get(_home(workspace)).status_code == 200  # now from the cache

    with django_capture_on_commit_callbacks(execute=True):
        services.remove_member(membership=Membership.objects.get(user=member))

    assert client.get(_home(workspace)).status_code == 404


def test_a_demoted_admin_cannot_manage_on_their_next_request(client, workspace, owner, admin_user):
    client.force_login(admin_user)
    assert client.get(_settings(workspace)).status_code == 200

    services.change_role(membership=Membership.objects.get(user=admin_user), role="viewer")

    assert client.get(_settings(workspace)).status_code == 403


def test_a_workspace_being_deleted_is_gone_for_its_members_at_once(
    client, workspace, owner, member, django_capture_on_commit_callbacks
):
    client.force_login(member)
    assert client.get(_home(workspace)).status_code == 200

    with django_capture_on_commit_callbacks(execute=False):
        services.request_workspace_deletion(workspace=workspace)

    assert client.get(_home(workspace)).status_code == 404


def test_a_page_that_read_before_a_removal_committed_cannot_serve_the_old_memberships(
    client, workspace, owner, member, django_capture_on_commit_callbacks
):
    """A page of the member's, running while the removal commits, read the rows before
    it and stores them after the removal's first restamp: the commit's restamp wins."""
    client.force_login(member)
    before = memberships.user_memberships(member)
    entry_key, stamp_key = memberships._keys(member.pk)

    with django_capture_on_commit_callbacks(execute=True):
        services.remove_member(membership=Membership.objects.get(user=member))
        cache.set(entry_key, (cache.get(stamp_key), before))  # the concurrent page's write

    assert memberships.user_memberships(member) == []
    assert client.get(_home(workspace)).status_code == 404


def test_an_imported_workspace_is_open_to_its_members_on_their_next_page(client, workspace, owner):
    client.force_login(owner)
    assert client.get(_home(workspace)).status_code == 200
    archive = io.BytesIO()
    export_workspace(workspace=workspace, out=archive)
    archive.seek(0)

    copy = import_workspace(source=archive, slug="acme-copy").workspace

    assert client.get(_home(copy)).status_code == 200
