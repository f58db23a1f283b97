"""The admin as an operator console: every page renders; secrets never appear."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.workspaces.helpers import invite
from workspaces.models import ApiToken, Invitation, Membership
from workspaces.services import issue_token


@pytest.fixture
def staff_client(client, db):
    from accounts.models import User

    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    return client


@pytest.fixture
def cast(workspace, owner, member, outsider):
    """Give every workspace model, and the third-party models admins use, at least one row."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth.models import Group
    from django.utils import timezone
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    EmailAddress.objects.create(user=owner, email=owner.email, verified=True, primary=True)
    Group.objects.create(name="operators")
    every_minute = IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="acme sync", task="x.y", interval=every_minute)
    CrontabSchedule.objects.create(minute="5")
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    SolarSchedule.objects.create(event="sunrise", latitude=51.5, longitude=0.1)
    token, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="member")
    invitation = invite(workspace, owner, role="viewer")
    return {"token": token, "raw_token": raw, "invitation": invitation}


def _admin_url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


@pytest.mark.parametrize(
    "model", list(admin.site._registry), ids=lambda m: f"{m._meta.app_label}.{m.__name__}"
)
def test_every_registered_model_renders(staff_client, cast, model):
    changelist = staff_client.get(_admin_url(model, "changelist"))
    assert changelist.status_code == 200
    searched = staff_client.get(_admin_url(model, "changelist"), {"q": "acme"})
    assert searched.status_code == 200
    obj = model._default_manager.first()
    if obj is not None:
        assert staff_client.get(_admin_url(model, "change", obj.pk)).status_code == 200
    elif admin.site._registry[model].has_add_permission(_request(staff_client)):
        assert staff_client.get(_admin_url(model, "add")).status_code == 200


def _request(client):
    from django.test import RequestFactory

    from accounts.models import User

    request = RequestFactory().get("/")
    request.user = User.objects.get(email="root@example.com")
    return request


def test_token_digest_never_appears_in_admin(staff_client, cast):
    token = cast["token"]
    pages = [
        staff_client.get(_admin_url(ApiToken, "changelist")),
        staff_client.get(_admin_url(ApiToken, "change", token.pk)),
        staff_client.get(_admin_url(ApiToken, "history", token.pk)),
    ]
    for page in pages:
        assert page.status_code == 200
        html = page.content.decode()
        assert token.digest not in html
        assert cast["raw_token"] not in html
    assert token.lookup in pages[0].content.decode()


def test_invitation_token_digest_never_appears_in_admin(staff_client, cast):
    invitation = cast["invitation"]
    for page in [
        staff_client.get(_admin_url(Invitation, "changelist")),
        staff_client.get(_admin_url(Invitation, "change", invitation.pk)),
    ]:
        assert page.status_code == 200
        assert invitation.token_digest not in page.content.decode()
        assert "new@example.com" in page.content.decode()


def test_tokens_cannot_be_added_in_admin(staff_client, db):
    assert staff_client.get(_admin_url(ApiToken, "add")).status_code == 403


def test_revoke_action_revokes_and_reports_a_count(staff_client, cast):
    token = cast["token"]
    response = staff_client.post(
        _admin_url(ApiToken, "changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "1 token(s) revoked" in response.content.decode()


def test_admin_is_branded(staff_client):
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert "iofold" in html


def test_admin_needs_staff(client, owner):
    client.force_login(owner)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_delete_action_queues_background_deletion(
    staff_client, workspace, owner, django_capture_on_commit_callbacks, monkeypatch
):
    from workspaces import tasks
    from workspaces.models import Workspace

    queued = []
    monkeypatch.setattr(tasks.delete_workspace_task, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            _admin_url(Workspace, "changelist"),
            {"action": "request_deletion", "_selected_action": [workspace.pk]},
            follow=True,
        )
    assert "1 workspace(s) queued for deletion" in response.content.decode()
    assert queued == [workspace.pk]


def test_admin_index_sections_and_models_are_named_once_and_spelled_right(staff_client):
    """Our users and allauth's email addresses were both under "Accounts"."""
    app_list = staff_client.get(reverse("admin:index")).context["app_list"]
    sections = [app["name"] for app in app_list]
    assert len(sections) == len(set(sections)), sections
    assert {"Users", "Accounts"} <= set(sections)
    models = {model["name"] for app in app_list for model in app["models"]}
    assert "Provider settings" in models
    assert not any(name.endswith("ss") for name in models), models


def _token_of(user, workspace):
    token, _ = issue_token(workspace=workspace, name=f"{user} ci", created_by=user, role="member")
    return token


def test_removing_a_member_in_the_admin_revokes_their_tokens(
    staff_client, workspace, owner, member
):
    from workspaces.models import Membership

    token = _token_of(member, workspace)
    membership = Membership.objects.get(user=member)
    staff_client.post(_admin_url(Membership, "delete", membership.pk), {"post": "yes"})
    assert not Membership.objects.filter(pk=membership.pk).exists()
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_bulk_removing_members_in_the_admin_revokes_their_tokens(
    staff_client, workspace, owner, member, admin_user
):
    from workspaces.models import Membership

    tokens = [_token_of(user, workspace) for user in (member, admin_user)]
    kept = _token_of(owner, workspace)
    removed = list(Membership.objects.filter(user__in=[member, admin_user]))
    staff_client.post(
        _admin_url(Membership, "changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [m.pk for m in removed],
            "post": "yes",
        },
    )
    assert list(Membership.objects.for_workspace(workspace)) == [owner.memberships.get()]
    assert all(ApiToken.objects.get(pk=t.pk).revoked_at is not None for t in tokens)
    assert ApiToken.objects.get(pk=kept.pk).revoked_at is None


def _workspace_page(workspace, *, delete, role=lambda row: row.role) -> dict:
    """The workspace admin page's form as posted, its members' rows in id order:
    ``delete(row)`` ticks a row's DELETE, ``role(row)`` is the role it is given."""
    rows = list(Membership.objects.for_workspace(workspace).order_by("pk"))
    data = {
        "name": workspace.name,
        "slug": workspace.slug,
        "memberships-TOTAL_FORMS": len(rows),
        "memberships-INITIAL_FORMS": len(rows),
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    for i, row in enumerate(rows):
        data |= {
            f"memberships-{i}-id": row.pk,
            f"memberships-{i}-workspace": workspace.pk,
            f"memberships-{i}-user": row.user_id,
            f"memberships-{i}-role": role(row),
        }
        if delete(row):
            data[f"memberships-{i}-DELETE"] = "on"
    return data


def test_removing_a_member_from_the_workspace_page_revokes_their_tokens(
    staff_client, workspace, owner, member
):
    from workspaces.models import Membership, Workspace

    token = _token_of(member, workspace)
    data = _workspace_page(workspace, delete=lambda row: row.user == member)
    response = staff_client.post(_admin_url(Workspace, "change", workspace.pk), data)
    assert response.status_code == 302
    assert not Membership.objects.filter(user=member).exists()
    token.refresh_from_db()
    assert token.revoked_at is not None


@pytest.mark.parametrize("how", ["deleted", "demoted"])
def test_the_workspace_page_keeps_an_owner_when_all_owners_leave_in_one_save(
    staff_client, workspace, owner, outsider, how
):
    from workspaces.models import Workspace

    Membership.objects.create(workspace=workspace, user=outsider, role=Membership.Role.OWNER)
    data = _workspace_page(
        workspace,
        delete=lambda row: how == "deleted",
        role=lambda row: "viewer" if how == "demoted" else row.role,
    )
    response = staff_client.post(_admin_url(Workspace, "change", workspace.pk), data)

    assert response.status_code == 200  # the page again, with the error
    assert "A workspace must keep at least one owner." in response.content.decode()
    owners = Membership.objects.for_workspace(workspace).filter(role=Membership.Role.OWNER)
    assert owners.count() == 2
    # One of the two may still go.
    data.pop("memberships-1-DELETE", None)
    data["memberships-1-role"] = Membership.Role.OWNER
    response = staff_client.post(_admin_url(Workspace, "change", workspace.pk), data)
    assert response.status_code == 302
    assert owners.count() == 1


def test_the_admin_keeps_a_workspace_s_last_owner(staff_client, workspace, owner):
    membership = Membership.objects.get(workspace=workspace, user=owner)
    url = reverse("admin:workspaces_membership_change", args=[membership.pk])
    data = {"user": owner.pk, "workspace": workspace.pk, "role": "viewer"}
    response = staff_client.post(url, data)
    assert response.status_code == 200  # the form again, with the error
    assert "A workspace must keep at least one owner." in response.content.decode()
    assert Membership.objects.get(pk=membership.pk).role == "owner"


def test_deleting_the_last_owner_in_the_admin_is_refused(staff_client, workspace, owner):
    membership = Membership.objects.get(workspace=workspace, user=owner)
    response = staff_client.post(
        _admin_url(Membership, "delete", membership.pk), {"post": "yes"}, follow=True
    )
    html = response.content.decode()
    assert "Acme: A workspace must keep at least one owner." in html
    assert "deleted successfully" not in html
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_bulk_deleting_a_workspace_s_owners_in_the_admin_is_refused(
    staff_client, workspace, owner, member, other_workspace, outsider
):
    second = Membership.objects.create(
        workspace=workspace, user=outsider, role=Membership.Role.OWNER
    )
    chosen = [owner.memberships.get(), second, member.memberships.get()]
    response = staff_client.post(
        _admin_url(Membership, "changelist"),
        {"action": "delete_selected", "_selected_action": [m.pk for m in chosen], "post": "yes"},
        follow=True,
    )
    html = response.content.decode()
    assert "Acme: A workspace must keep at least one owner." in html
    assert "Successfully deleted" not in html
    assert Membership.objects.filter(pk__in=[m.pk for m in chosen]).count() == 3
    # One of two owners may still go.
    staff_client.post(
        _admin_url(Membership, "changelist"),
        {"action": "delete_selected", "_selected_action": [second.pk], "post": "yes"},
    )
    assert not Membership.objects.filter(pk=second.pk).exists()


def test_removing_a_member_in_the_admin_gives_back_their_review_queue(
    staff_client, workspace, owner, member
):
    from tests.traces.factories import EvalSetFactory, TraceFactory
    from traces.assignments import assign_trace
    from traces.models import LabelAssignment
    from traces.services import add_traces_to_eval_set

    trace = TraceFactory(workspace=workspace)
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    assign_trace(eval_set=eval_set, trace=trace, reviewer_id=member.pk, assigned_by=owner)
    membership = Membership.objects.get(user=member)

    staff_client.post(_admin_url(Membership, "delete", membership.pk), {"post": "yes"})

    assert not LabelAssignment.objects.filter(assignee=member).exists()
