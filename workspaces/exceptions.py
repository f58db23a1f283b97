from iofold.exceptions import ApplicationError, RateLimited


class WorkspaceError(ApplicationError):
    """A workspace rule was broken (last owner, expired invitation, ...)."""


class InvitationForAnotherAddress(WorkspaceError):
    """The invitation was sent to an address the user has not verified as theirs."""


class InvitationWithdrawn(WorkspaceError):
    """Whoever sent the invitation may no longer invite: removed, left or made member."""


class InvitationsRateLimited(RateLimited, WorkspaceError):
    """Too many invitation emails to one address, or from one user: wait and send again."""
