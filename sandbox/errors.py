"""Errors raised by the sandbox runner."""


class SandboxError(Exception):
    """A sandbox run could not happen; `permanent` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class SandboxUnavailable(SandboxError):
    """The configured backend cannot run code here (missing binary, libraries, namespaces)."""


class BackendRefused(SandboxError):
    """The configured backend is not allowed by the current configuration."""
