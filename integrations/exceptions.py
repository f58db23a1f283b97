from iofold.exceptions import ApplicationError


class IntegrationError(ApplicationError):
    """An integration rule was broken or its platform refused; ``message`` is safe to show.

    ``permanent`` says whether retrying the same thing can help; ``code`` is the adapter's
    machine-readable reason when the platform caused it (auth, unreachable, not_langfuse...).
    """

    def __init__(self, message: str, *, permanent: bool = True, code: str = "invalid"):
        super().__init__(message)
        self.permanent = permanent
        self.code = code
