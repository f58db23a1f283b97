from iofold.exceptions import ApplicationError


class AccountError(ApplicationError):
    """A rule of the user's own account was broken (a name too long, ...)."""
