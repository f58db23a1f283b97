class ApplicationError(Exception):
    """A domain rule was broken; ``message`` is safe to show to the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RateLimited(ApplicationError):
    """A client sent more than its budget; retrying after ``retry_after`` seconds helps.

    The API answers 429 with ``Retry-After`` (``iofold.api.exception_handler``).
    """

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
