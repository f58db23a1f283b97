class ApplicationError(Exception):
    """A domain rule was broken; ``message`` is safe to show to the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
