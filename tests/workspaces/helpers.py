"""Invitations made the way the members page makes them, for tests of what follows."""

from django.core import mail

from workspaces.models import Invitation
from workspaces.services import invite_member


def invite(workspace, inviter, email: str = "new@example.com", role: str = "member") -> Invitation:
    """Invite ``email`` to the workspace, as a page served at http://testserver would."""
    return invite_member(
        workspace=workspace,
        email=email,
        role=role,
        invited_by=inviter,
        base_url="http://testserver",
    )


def invitation_path(workspace, inviter, capture, email: str = "new@example.com") -> str:
    """Invite ``email`` as a member and return the path of the link the email sends them.

    ``capture`` is pytest-django's ``django_capture_on_commit_callbacks``: the email goes
    out once the invitation is committed."""
    with capture(execute=True):
        invite(workspace, inviter, email)
    link = next(w for w in mail.outbox[-1].body.split() if "/invitations/" in w)
    return "/" + link.split("://", 1)[1].split("/", 1)[1]
