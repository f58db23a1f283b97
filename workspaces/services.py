import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from accounts.selectors import email_address_status, verified_emails
from iofold.lib import ratelimit
from iofold.lib.links import email_link
from iofold.lib.tasks import enqueue
from workspaces.exceptions import (
    InvitationForAnotherAddress,
    InvitationsRateLimited,
    InvitationWithdrawn,
    WorkspaceError,
)
from workspaces.memberships import forget_workspace_members
from workspaces.models import ApiToken, Invitation, Membership, Workspace, digest_secret

logger = logging.getLogger(__name__)

INVITATION_LIFETIME = timedelta(days=7)
# Whoever signs up owns a workspace, so invitations are email anyone can make iofold send:
# a few to one address from one workspace per hour (a resend, a corrected role), and a
# team's worth from one user per hour. allauth limits its own emails likewise.
INVITATIONS_PER_ADDRESS_PER_HOUR = 3
INVITATIONS_PER_USER_PER_HOUR = 50
# Registered name of the task (workspaces.tasks imports this module).
DELETE_WORKSPACE_TASK = "workspaces.tasks.delete_workspace_task"


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "workspace"
    slug = base
    while Workspace.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(2)}"
    return slug


@transaction.atomic
def create_workspace(*, name: str, owner, is_demo: bool = False) -> Workspace:
    """Create a workspace with ``owner`` as its first owner."""
    name = name.strip()
    if not name:
        raise WorkspaceError("A workspace needs a name.")
    workspace = Workspace.objects.create(name=name, slug=_unique_slug(name), is_demo=is_demo)
    Membership.objects.create(workspace=workspace, user=owner, role=Membership.Role.OWNER)
    return workspace


# Two "Create workspace" submits of one name this close together are one click made twice
# (a double click, a re-sent form).
DUPLICATE_CREATE_WINDOW = timedelta(seconds=30)


@transaction.atomic
def create_workspace_once(*, name: str, owner) -> Workspace:
    """Create a workspace as ``create_workspace`` does, unless ``owner`` created one of the
    same name within ``DUPLICATE_CREATE_WINDOW``: return that one.

    The repeat is led to the workspace just made rather than refused: the browser shows the
    second submit's answer, and a refusal there would hide that the first one worked.
    """
    # The two submits arrive together: the owner's row, locked, holds the second until the
    # first has committed its workspace, which the second then finds.
    get_user_model().objects.select_for_update().get(pk=owner.pk)
    just_made = (
        Workspace.objects.for_user(owner)
        .filter(
            name=name.strip(),
            memberships__role=Membership.Role.OWNER,
            created_at__gte=timezone.now() - DUPLICATE_CREATE_WINDOW,
        )
        .order_by("-created_at")
        .first()
    )
    return just_made or create_workspace(name=name, owner=owner)


def create_personal_workspace(*, user) -> Workspace:
    """Create the workspace a new user lands in after sign-up."""
    return create_workspace(name=f"{user.get_short_name()}'s workspace", owner=user)


@transaction.atomic
def invite_member(
    *,
    workspace: Workspace,
    email: str,
    role: str,
    invited_by,
    base_url: str = "",
    by: Membership | None = None,
) -> Invitation:
    """Email ``email`` a one-time link to join; return the invitation.

    An address has at most one open invitation per workspace: inviting it again gives that
    invitation a new link (the old one stops working), the new role and a fresh expiry,
    and sends it again. The link is under ``SITE_URL`` when set, else under ``base_url``,
    the origin of the page the invitation was sent from.
    """
    email = email.strip().lower()
    if role not in Membership.Role.values:
        raise WorkspaceError(f"Unknown role {role!r}.")
    _ensure_may_touch_owners(by, role)
    if Membership.objects.for_workspace(workspace).filter(user__email__iexact=email).exists():
        raise WorkspaceError(f"{email} is already a member of this workspace.")
    if not urlsplit(email_link("/", base_url)).netloc:
        raise ImproperlyConfigured("Invitation links need SITE_URL or the sending page's URL.")
    _take_invitation_budget(workspace=workspace, email=email, invited_by=invited_by)
    raw = secrets.token_urlsafe(32)
    invitation, _ = Invitation.objects.update_or_create(
        workspace=workspace,
        email=email,
        accepted_at=None,
        defaults={
            "role": role,
            "token_digest": digest_secret(raw),
            "invited_by": invited_by,
            "expires_at": timezone.now() + INVITATION_LIFETIME,
        },
    )
    link = email_link(reverse("accept_invitation", kwargs={"token": raw}), base_url)
    context = {"invitation": invitation, "link": link, "invited_by": invited_by}
    transaction.on_commit(
        lambda: send_mail(
            subject=f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}Join {workspace.name} on iofold",
            message=render_to_string("workspaces/invitation_email.txt", context),
            from_email=None,
            recipient_list=[email],
        )
    )
    return invitation


def _take_invitation_budget(*, workspace: Workspace, email: str, invited_by) -> None:
    """Count one invitation email, or refuse it (nothing is written) when over a budget."""
    wait = ratelimit.take(
        f"invite-user:{invited_by.pk}", 1, limit=INVITATIONS_PER_USER_PER_HOUR, window=3600
    )
    if wait is not None:
        raise InvitationsRateLimited(
            f"You have sent {INVITATIONS_PER_USER_PER_HOUR} invitations in the last hour: "
            f"try again in {_minutes(wait)}.",
            retry_after=wait,
        )
    wait = ratelimit.take(
        f"invite-address:{workspace.pk}:{digest_secret(email)}",
        1,
        limit=INVITATIONS_PER_ADDRESS_PER_HOUR,
        window=3600,
    )
    if wait is not None:
        raise InvitationsRateLimited(
            f"{email} was sent an invitation {INVITATIONS_PER_ADDRESS_PER_HOUR} times in the "
            f"last hour: send it again in {_minutes(wait)}.",
            retry_after=wait,
        )


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def find_invitation(*, token: str) -> Invitation:
    """Return the invitation for a link's token, or fail with a message for the user."""
    invitation = (
        Invitation.objects.select_related("workspace", "invited_by")
        .filter(token_digest=digest_secret(token))
        .first()
    )
    if invitation is None:
        raise WorkspaceError("This invitation link is not valid.")
    if invitation.accepted_at is not None:
        raise WorkspaceError("This invitation has already been used.")
    if invitation.is_expired:
        raise WorkspaceError("This invitation has expired. Ask for a new one.")
    if invitation.workspace.deletion_requested_at is not None:
        raise WorkspaceError("This workspace is being deleted: there is nothing to join.")
    _inviters_role(invitation)
    return invitation


def _inviters_role(invitation: Invitation) -> str:
    """Return the inviter's current role, which the invitation cannot exceed (as an API
    token cannot exceed its creator's); fail once they may invite no longer.

    An invitation acts for whoever sent it: an admin removed, or made member, after
    inviting an address of their own must not walk back in through the link.
    """
    role = (
        Membership.objects.for_workspace(invitation.workspace_id)
        .filter(user=invitation.invited_by_id)
        .values_list("role", flat=True)
        .first()
    )
    if role not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise InvitationWithdrawn("This invitation was withdrawn. Ask for a new one.")
    return role


def workspace_joined_through(*, token: str, user) -> Workspace | None:
    """Return the workspace ``user`` joined with this link and still belongs to, if any."""
    invitation = Invitation.objects.filter(
        token_digest=digest_secret(token), accepted_by=user.pk
    ).first()
    if invitation is None:
        return None
    return Workspace.objects.for_user(user).filter(pk=invitation.workspace_id).first()


def accept_invitation(*, token: str, user) -> Membership:
    """Make ``user`` a member through the invitation, once.

    Only the invited address may accept: ``user`` must have verified it as theirs, so a
    forwarded or leaked link is no use to anyone else.
    """
    return _join(find_invitation(token=token), user)


def has_open_invitation(*, email: str) -> bool:
    """Return whether some workspace is waiting for ``email`` to join."""
    return Invitation.objects.pending().filter(email__iexact=email).exists()


@transaction.atomic
def join_invited_workspaces(*, user, email: str) -> list[Membership]:
    """Settle a new user's workspaces once they have verified ``email``.

    A sign-up with an open invitation gets no workspace of its own (see the account
    adapter): it joins the workspaces that invited the address. If those invitations were
    withdrawn or expired meanwhile, it gets its own now, so nobody lands nowhere. Users who
    already belong somewhere accept invitations through their links.
    """
    if Membership.objects.for_user(user).exists():
        return []
    invitations = Invitation.objects.pending().filter(email__iexact=email)
    joined = []
    for invitation in invitations.select_related("workspace"):
        try:
            joined.append(_join(invitation, user))
        except InvitationWithdrawn:
            continue
    if not joined:
        create_personal_workspace(user=user)
    return joined


@transaction.atomic
def _join(invitation: Invitation, user) -> Membership:
    if email_address_status(user, invitation.email) != "verified":
        raise InvitationForAnotherAddress(f"This invitation is for {invitation.email}.")
    role = Membership.weaker_role(invitation.role, _inviters_role(invitation))
    claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        accepted_at=timezone.now(), accepted_by=user
    )
    if not claimed:
        raise WorkspaceError("This invitation has already been used.")
    membership, _ = Membership.objects.get_or_create(
        workspace=invitation.workspace, user=user, defaults={"role": role}
    )
    # A member has nothing left to accept here, whichever of their addresses was invited.
    Invitation.objects.for_workspace(invitation.workspace).filter(
        accepted_at__isnull=True, email__in=verified_emails(user)
    ).delete()
    return membership


@transaction.atomic
def change_role(*, membership: Membership, role: str, by: Membership | None = None) -> Membership:
    """Change a member's role, keeping at least one owner; ``by`` is who asks (None: staff).

    A member made viewer can no longer label: the traces queued for them are given back.
    """
    if role not in Membership.Role.values:
        raise WorkspaceError(f"Unknown role {role!r}.")
    _ensure_may_touch_owners(by, role, membership.role)
    if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
        ensure_another_owner(membership)
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    if not membership.can_manage:
        _withdraw_invitations(membership)
    if role == Membership.Role.VIEWER:
        _release_review_queue(membership)
    return membership


@transaction.atomic
def remove_member(*, membership: Membership, by: Membership | None = None) -> None:
    """Remove a member, with what they leave behind (``release_member``); ``by`` is who asks."""
    _ensure_may_touch_owners(by, membership.role)
    if membership.role == Membership.Role.OWNER:
        ensure_another_owner(membership)
    release_member(membership=membership)
    membership.delete()


def release_member(*, membership: Membership) -> None:
    """Undo what a leaving member holds in the workspace: the API tokens they created stop
    working, their open invitations are withdrawn, and the traces queued for them to label
    go back to be assigned again."""
    revoke_member_tokens(membership=membership)
    _withdraw_invitations(membership)
    _release_review_queue(membership)


def _withdraw_invitations(membership: Membership) -> None:
    # Their links no longer work (see _inviters_role): the members page stops listing them.
    Invitation.objects.for_workspace(membership.workspace_id).filter(
        invited_by=membership.user_id, accepted_at__isnull=True
    ).delete()


def _release_review_queue(membership: Membership) -> None:
    # Deferred: the composition layer sits above the apps and imports them all.
    from iofold.composition import release_review_queue

    release_review_queue(membership.workspace_id, membership.user_id)


def revoke_member_tokens(*, membership: Membership) -> int:
    """Revoke the tokens the member created in the workspace; return how many."""
    return (
        ApiToken.objects.for_workspace(membership.workspace_id)
        .active()
        .filter(created_by=membership.user_id)
        .update(revoked_at=timezone.now())
    )


def leave_workspace(*, membership: Membership) -> None:
    """Take the user out of the workspace, as an owner would remove them."""
    try:
        remove_member(membership=membership)
    except WorkspaceError:
        raise WorkspaceError(
            "You are the only owner. Make another member an owner first, or delete the workspace."
        ) from None


def assignable_roles(by: Membership) -> list[tuple[str, str]]:
    """The roles ``by`` may give: an admin manages members but cannot make owners."""
    return [
        (value, label)
        for value, label in Membership.Role.choices
        if value != Membership.Role.OWNER or by.role == Membership.Role.OWNER
    ]


def _ensure_may_touch_owners(by: Membership | None, *roles: str) -> None:
    # Owners alone may delete the workspace: an admin who could make (or unmake) owners
    # could promote themselves and delete it, or lock the owners out.
    if by is not None and by.role != Membership.Role.OWNER and Membership.Role.OWNER in roles:
        raise WorkspaceError("Only an owner can make someone an owner, or change or remove one.")


def ensure_another_owner(membership: Membership, *, leaving: Iterable[int] = ()) -> None:
    """Fail unless the workspace has an owner besides ``membership`` (and ``leaving``'s pks).

    Within a transaction the workspace's row stays locked until it ends: two owners
    demoting (or removing) each other at once are served one after the other, so the
    second sees the first's change and is refused, instead of both passing this check and
    leaving the workspace with no owner.
    """
    others = (
        Membership.objects.for_workspace(membership.workspace)
        .filter(role=Membership.Role.OWNER)
        .exclude(pk=membership.pk)
        .exclude(pk__in=list(leaving))
    )
    with transaction.atomic():
        list(Workspace.objects.select_for_update().filter(pk=membership.workspace_id))
        if not others.exists():
            raise WorkspaceError("A workspace must keep at least one owner.")


def issue_token(*, workspace: Workspace, name: str, created_by, role: str) -> tuple[ApiToken, str]:
    """Create an API token; return it with the raw secret, which is shown only once."""
    if not name.strip():
        raise WorkspaceError("Give the token a name, so you know later what uses it.")
    if role not in Membership.Role.values or role == Membership.Role.OWNER:
        raise WorkspaceError("A token's role is admin, member or viewer.")
    for _ in range(5):
        lookup = secrets.token_hex(6)
        raw = f"{ApiToken.PREFIX}{lookup}{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    workspace=workspace,
                    name=name.strip(),
                    lookup=lookup,
                    digest=digest_secret(raw),
                    created_by=created_by,
                    role=role,
                )
            return token, raw
        except IntegrityError:  # lookup collision: astronomically rare, try again
            continue
    raise WorkspaceError("Could not create a token; try again.")


def revoke_token(*, token: ApiToken) -> ApiToken:
    """Revoke a token; requests with it fail from now on."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
    return token


@transaction.atomic
def rename_workspace(*, workspace: Workspace, name: str) -> Workspace:
    """Rename a workspace; its slug, and so its URLs, stay the same."""
    name = name.strip()
    if not name:
        raise WorkspaceError("A workspace needs a name.")
    workspace.name = name
    workspace.save(update_fields=["name"])
    return workspace


@transaction.atomic
def request_workspace_deletion(*, workspace: Workspace) -> None:
    """Hide the workspace at once and delete it, with all its data, in the background."""
    claimed = Workspace.objects.filter(pk=workspace.pk, deletion_requested_at__isnull=True).update(
        deletion_requested_at=timezone.now()
    )
    if claimed:
        # update() sends no signal: its members' cached memberships must go by hand.
        forget_workspace_members(workspace.pk)
        transaction.on_commit(lambda: enqueue(DELETE_WORKSPACE_TASK, workspace.pk))


def schedule_workspace_deletion(*, workspace: Workspace, grace: timedelta) -> Workspace:
    """Delete the workspace once ``grace`` has passed; ``cancel_workspace_deletion`` undoes it."""
    if workspace.deletion_requested_at is not None:
        raise WorkspaceError("This workspace is already being deleted.")
    workspace.deletion_scheduled_for = timezone.now() + grace
    workspace.save(update_fields=["deletion_scheduled_for"])
    logger.info(
        "workspace deletion scheduled workspace=%s at=%s",
        workspace.pk,
        workspace.deletion_scheduled_for.isoformat(),
    )
    return workspace


def cancel_workspace_deletion(*, workspace: Workspace) -> Workspace:
    """Keep a workspace whose deletion was scheduled; too late once it is being deleted."""
    if workspace.deletion_requested_at is not None:
        raise WorkspaceError("Too late: this workspace is already being deleted.")
    workspace.deletion_scheduled_for = None
    workspace.save(update_fields=["deletion_scheduled_for"])
    logger.info("workspace deletion cancelled workspace=%s", workspace.pk)
    return workspace


def request_due_deletions() -> int:
    """Request the deletion of every workspace whose scheduled deletion is due."""
    due = Workspace.objects.filter(
        deletion_scheduled_for__lte=timezone.now(), deletion_requested_at__isnull=True
    )
    count = 0
    for workspace in due:
        request_workspace_deletion(workspace=workspace)
        count += 1
    return count


def delete_workspace(*, workspace_id: int) -> bool:
    """Delete a workspace whose deletion was requested; return whether one was deleted."""
    deleted, _ = Workspace.objects.filter(
        pk=workspace_id, deletion_requested_at__isnull=False
    ).delete()
    return bool(deleted)
