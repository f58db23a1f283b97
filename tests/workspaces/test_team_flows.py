"""Team flows, executed through the pages: invitations, reviewers leaving mid-review, the
last owner, roles changing under an open page, a workspace renamed or deleted under its
members."""

import html
import json
import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from tests.factories import EmailAddressFactory, MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, TraceFactory
from traces import assignments
from traces.models import Feedback, LabelAssignment
from traces.services import add_traces_to_eval_set
from workspaces import services
from workspaces.exceptions import WorkspaceError
from workspaces.models import Invitation, Membership
from workspaces.services import issue_token


def _members_url(workspace):
    return reverse("workspaces:members", kwargs={"slug": workspace.slug})


def _path(link: str) -> str:
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


@pytest.fixture
def inviting(client, workspace, owner, django_capture_on_commit_callbacks):
    """Return ``invite(email, role, by=owner)``, inviting through the members page: the
    emailed link's path."""

    def invite(email, role="member", by=owner):
        client.force_login(by)
        url = reverse("workspaces:invite", kwargs={"slug": workspace.slug})
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url, {"email": email, "role": role})
        assert response.status_code == 302, response.content[:500]
        return _path(next(w for w in mail.outbox[-1].body.split() if "/invitations/" in w))

    return invite


def _verified(email):
    return EmailAddressFactory(user=UserFactory(email=email)).user


# --- invitations ----------------------------------------------------------------------


def test_an_existing_user_joins_through_the_emailed_link(client, workspace, inviting):
    path = inviting("bob@example.com", "viewer")
    bob = _verified("bob@example.com")
    client.force_login(bob)

    assert client.get(path).status_code == 200
    response = client.post(path)

    assert response.url == workspace.get_absolute_url()
    assert Membership.objects.get(workspace=workspace, user=bob).role == "viewer"


def test_a_new_user_signing_up_from_the_link_joins_once_their_address_is_confirmed(
    client, workspace, inviting, django_capture_on_commit_callbacks
):
    path = inviting("carol@example.com")
    client.logout()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            f"{reverse('account_signup')}?next={path}",
            {
                "email": "carol@example.com",
                "password1": "a long enough passphrase 42",
                "password2": "a long enough passphrase 42",
            },
        )
    confirm = next(w for w in mail.outbox[-1].body.split() if "/confirm-email/" in w)
    client.post(_path(confirm))

    carol = Membership.objects.for_workspace(workspace).get(user__email="carol@example.com")
    assert carol.role == "member"


@pytest.mark.parametrize(
    "spoil, message",
    [
        ("expire", "This invitation has expired."),
        ("cancel", "This invitation link is not valid."),
        ("reinvite", "This invitation link is not valid."),
        ("use", "This invitation has already been used."),
    ],
)
def test_a_spoilt_link_is_refused_and_joins_nobody(
    client, workspace, owner, inviting, django_capture_on_commit_callbacks, spoil, message
):
    path = inviting("dan@example.com")
    dan = _verified("dan@example.com")
    invitation = Invitation.objects.for_workspace(workspace).get(email="dan@example.com")
    if spoil == "expire":
        invitation.expires_at = timezone.now() - timedelta(seconds=1)
        invitation.save(update_fields=["expires_at"])
    elif spoil == "cancel":
        cancel = reverse(
            "workspaces:cancel_invitation", kwargs={"slug": workspace.slug, "pk": invitation.pk}
        )
        client.post(cancel, {"confirmed": "yes"})
    elif spoil == "reinvite":
        inviting("dan@example.com")  # a new link; the first stops working
    elif spoil == "use":
        client.force_login(dan)
        client.post(path)
        Membership.objects.filter(workspace=workspace, user=dan).delete()  # removed since
    client.force_login(dan)

    page = client.get(path)
    joined = client.post(path)

    assert page.status_code == 404 and message in page.content.decode()
    assert joined.status_code == 404
    assert not Membership.objects.filter(workspace=workspace, user=dan).exists()


def test_accepting_while_signed_in_as_someone_else_joins_nobody(
    client, workspace, inviting, outsider
):
    path = inviting("erin@example.com")
    EmailAddressFactory(user=outsider)
    client.force_login(outsider)

    assert client.post(path).status_code == 403

    assert not Membership.objects.filter(workspace=workspace, user=outsider).exists()
    assert Invitation.objects.for_workspace(workspace).pending().count() == 1


def test_an_invitation_from_a_removed_admin_no_longer_lets_anyone_in(
    client, workspace, owner, admin_user, inviting
):
    """An admin invites an address of their own, then is removed: the link is void, as
    their API tokens are (else a removed admin would walk back in as admin)."""
    path = inviting("alt@example.com", "admin", by=admin_user)
    services.remove_member(membership=Membership.objects.get(user=admin_user))
    alt = _verified("alt@example.com")
    client.force_login(alt)

    page = client.get(path)
    joined = client.post(path)

    assert page.status_code == 404 and joined.status_code == 404
    assert not Membership.objects.filter(workspace=workspace, user=alt).exists()


def test_an_invitation_from_an_inviter_whose_account_is_gone_is_withdrawn(
    client, workspace, owner, admin_user, inviting
):
    path = inviting("alt@example.com", "admin", by=admin_user)
    admin_user.delete()
    alt = _verified("alt@example.com")
    client.force_login(alt)

    page = client.get(path)
    joined = client.post(path)

    assert page.status_code == 404
    assert "This invitation was withdrawn." in page.content.decode()
    assert joined.status_code == 404
    assert not Membership.objects.filter(workspace=workspace, user=alt).exists()


@pytest.mark.parametrize("leaves", ["removed", "made member"])
def test_the_members_page_stops_listing_invitations_of_an_admin_who_may_no_longer_invite(
    client, workspace, owner, admin_user, inviting, leaves
):
    inviting("alt@example.com", by=admin_user)
    inviting("kept@example.com")
    client.get(_members_url(workspace))  # shows (and so clears) the "sent" messages
    membership = Membership.objects.get(user=admin_user)
    if leaves == "removed":
        services.remove_member(membership=membership)
    else:
        services.change_role(membership=membership, role="member")
    client.force_login(owner)

    page = client.get(_members_url(workspace)).content.decode()

    assert "kept@example.com" in page and "alt@example.com" not in page


def test_an_invitation_grants_no_more_than_its_inviters_current_role(
    client, workspace, owner, inviting
):
    second_owner = MembershipFactory(workspace=workspace, role="owner").user
    path = inviting("frank@example.com", "owner", by=second_owner)
    services.change_role(membership=Membership.objects.get(user=second_owner), role="admin")
    frank = _verified("frank@example.com")
    client.force_login(frank)

    client.post(path)

    assert Membership.objects.get(workspace=workspace, user=frank).role == "admin"


# --- a reviewer leaves mid-review -----------------------------------------------------


@pytest.fixture
def assigned(workspace, owner, member):
    """Six traces of an eval set shared by the owner and the member; the member labelled
    one of theirs."""
    traces = [TraceFactory(workspace=workspace) for _ in range(6)]
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    assignments.assign_round_robin(
        eval_set=eval_set, reviewer_ids=[owner.pk, member.pk], agreement_target=0, assigned_by=owner
    )
    first = LabelAssignment.objects.filter(assignee=member).first()
    Feedback.objects.create(
        workspace=workspace, eval_set=eval_set, trace=first.trace, user=member, rating="positive"
    )
    return eval_set


def _remove(client, workspace, user):
    membership = Membership.objects.get(workspace=workspace, user=user)
    url = reverse("workspaces:remove_member", kwargs={"slug": workspace.slug, "pk": membership.pk})
    return client.post(url, {"confirmed": "yes"})


def test_removing_a_reviewer_mid_review_releases_the_traces_they_had_not_labelled(
    client, workspace, owner, member, assigned
):
    client.force_login(owner)

    assert _remove(client, workspace, member).status_code == 302

    left = LabelAssignment.objects.filter(eval_set=assigned, assignee=member)
    # The one they labelled stays theirs (their label stays); the two others are free...
    assert left.count() == 1 and Feedback.objects.filter(user=member).count() == 1
    # ...and go to the next round of assignments.
    made = assignments.assign_round_robin(
        eval_set=assigned, reviewer_ids=[owner.pk], agreement_target=0, assigned_by=owner
    )
    assert made == 2


def test_a_reviewer_made_viewer_mid_review_gives_back_their_queue(
    client, workspace, owner, member, assigned
):
    client.force_login(owner)
    membership = Membership.objects.get(workspace=workspace, user=member)
    url = reverse("workspaces:change_role", kwargs={"slug": workspace.slug, "pk": membership.pk})

    client.post(url, {"role": "viewer"})

    assert LabelAssignment.objects.filter(eval_set=assigned, assignee=member).count() == 1


def test_a_removed_reviewers_open_review_card_labels_nothing(
    client, workspace, owner, member, assigned
):
    trace = LabelAssignment.objects.filter(assignee=member).last().trace
    services.remove_member(membership=Membership.objects.get(user=member))
    client.force_login(member)
    url = reverse(
        "traces:review_label",
        kwargs={"slug": workspace.slug, "pk": assigned.pk, "trace_pk": trace.pk},
    )

    response = client.post(url, {"rating": "negative"})

    assert response.status_code == 404
    assert not Feedback.objects.filter(user=member, trace=trace).exists()


# --- the last owner -------------------------------------------------------------------


def test_demoting_the_last_owner_is_refused_and_said(client, workspace, owner, admin_user):
    client.force_login(owner)
    membership = Membership.objects.get(user=owner)
    url = reverse("workspaces:change_role", kwargs={"slug": workspace.slug, "pk": membership.pk})

    response = client.post(url, {"role": "admin"}, follow=True)

    assert "A workspace must keep at least one owner." in response.content.decode()
    assert Membership.objects.get(user=owner).role == "owner"


def test_the_last_owner_leaving_is_refused_and_said(client, workspace, owner, member):
    client.force_login(owner)
    url = reverse("workspaces:leave", kwargs={"slug": workspace.slug})

    response = client.post(url, {"confirmed": "yes"}, follow=True)

    assert "You are the only owner." in response.content.decode()
    assert Membership.objects.get(user=owner).role == "owner"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs row locks (PostgreSQL)")
def test_two_owners_demoting_each_other_at_once_leave_one_owner(workspace, owner):
    """The second demotion starts while the first is still uncommitted."""
    other = MembershipFactory(workspace=workspace, role="owner").user
    # Each request reads its own rows: (who is demoted, who asks).
    theirs_first, mine_first = (Membership.objects.get(user=u) for u in (other, owner))
    mine, theirs = (Membership.objects.get(user=u) for u in (owner, other))
    errors = []

    def demote_mine():
        try:
            services.change_role(membership=mine, role="admin", by=theirs)
        except WorkspaceError as exc:
            errors.append(exc.message)
        finally:
            connection.close()

    with transaction.atomic():
        services.change_role(membership=theirs_first, role="admin", by=mine_first)
        second = threading.Thread(target=demote_mine)
        second.start()
        second.join(timeout=1)  # it waits for this transaction, or is done already
    second.join()

    assert Membership.objects.for_workspace(workspace).filter(role="owner").count() == 1
    assert errors == ["A workspace must keep at least one owner."]


# --- roles and workspaces changing under an open page ---------------------------------


def test_a_member_made_viewer_with_the_review_open_is_refused_their_next_label(
    client, workspace, owner, member, assigned
):
    client.force_login(member)
    trace = LabelAssignment.objects.filter(assignee=member).last().trace
    review = reverse("traces:review", kwargs={"slug": workspace.slug, "pk": assigned.pk})
    assert client.get(review).status_code == 200
    services.change_role(membership=Membership.objects.get(user=member), role="viewer")
    url = reverse(
        "traces:review_label",
        kwargs={"slug": workspace.slug, "pk": assigned.pk, "trace_pk": trace.pk},
    )

    response = client.post(url, {"rating": "negative"})

    assert response.status_code == 403
    assert "Your role here is Viewer." in response.content.decode()
    assert not Feedback.objects.filter(user=member, trace=trace).exists()


def _htmx_handling(page: str, status: int) -> dict:
    """The page's htmx-config rule for an answer of ``status`` (htmx takes the first that
    matches)."""
    config = json.loads(
        html.unescape(re.search(r'name="htmx-config" content=\'([^\']+)\'', page).group(1))
    )
    return next(r for r in config["responseHandling"] if re.search(r["code"], str(status)))


@pytest.mark.parametrize("change", ["made viewer", "removed"])
def test_a_label_pressed_after_losing_the_right_shows_why_instead_of_nothing(
    client, workspace, owner, member, assigned, change
):
    """The review card posts with htmx, which swaps in no refusal unless told to."""
    client.force_login(member)
    trace = LabelAssignment.objects.filter(assignee=member).last().trace
    review = client.get(
        reverse("traces:review", kwargs={"slug": workspace.slug, "pk": assigned.pk})
    )
    membership = Membership.objects.get(user=member)
    if change == "removed":
        services.remove_member(membership=membership)
    else:
        services.change_role(membership=membership, role="viewer")
    url = reverse(
        "traces:review_label",
        kwargs={"slug": workspace.slug, "pk": assigned.pk, "trace_pk": trace.pk},
    )

    answer = client.post(url, {"rating": "negative"}, headers={"HX-Request": "true"})

    handling = _htmx_handling(review.content.decode(), answer.status_code)
    assert answer.status_code in (403, 404)
    assert handling["swap"] and handling["target"] == "body"
    assert "<body" in answer.content.decode()  # a whole page, for the body's place
    assert not Feedback.objects.filter(user=member, trace=trace).exists()


def test_an_admin_made_member_with_the_members_page_open_cannot_invite(
    client, workspace, owner, admin_user
):
    client.force_login(admin_user)
    assert client.get(_members_url(workspace)).status_code == 200
    services.change_role(membership=Membership.objects.get(user=admin_user), role="member")

    response = client.post(
        reverse("workspaces:invite", kwargs={"slug": workspace.slug}),
        {"email": "x@example.com", "role": "member"},
    )

    assert response.status_code == 403
    assert not Invitation.objects.for_workspace(workspace).exists()


def test_a_renamed_workspace_shows_its_new_name_to_everyone_in_it(client, workspace, owner, member):
    client.force_login(member)
    assert "Acme" in client.get(workspace.get_absolute_url()).content.decode()
    client.force_login(owner)
    client.post(reverse("workspaces:settings", kwargs={"slug": workspace.slug}), {"name": "Acme 2"})

    client.force_login(member)
    page = client.get(workspace.get_absolute_url())

    assert page.status_code == 200 and "Acme 2" in page.content.decode()


def test_a_deleted_workspace_is_gone_for_everyone_in_it(
    client, api_client, workspace, owner, member, django_capture_on_commit_callbacks
):
    _, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="member")
    client.force_login(member)
    assert client.get(workspace.get_absolute_url()).status_code == 200
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=False):
        client.post(
            reverse("workspaces:delete", kwargs={"slug": workspace.slug}), {"confirm": "acme"}
        )

    client.force_login(member)
    page = client.get(workspace.get_absolute_url())
    posted = client.post(
        reverse("traces:evalset_create", kwargs={"slug": workspace.slug}),
        {"name": "N", "criteria": "c", "target_labels": 10, "source_kind": "manual"},
    )
    api = api_client.get(reverse("api-traces"), headers={"Authorization": f"Bearer {raw}"})

    assert page.status_code == 404 and posted.status_code == 404
    assert api.status_code == 401
