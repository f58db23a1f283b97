from iofold.exceptions import ApplicationError


class WorkspaceError(ApplicationError):
    """A workspace rule was broken (last owner, expired invitation, ...)."""
