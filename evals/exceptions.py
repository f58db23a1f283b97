from iofold.exceptions import ApplicationError


class EvalError(ApplicationError):
    """An evals rule was broken or generation failed; ``message`` is safe to show.

    ``permanent`` says whether retrying the same thing can help.
    """

    def __init__(self, message: str, *, permanent: bool = True):
        super().__init__(message)
        self.permanent = permanent


class TransientEvalError(EvalError):
    """A failure worth retrying later (a provider outage, a busy sandbox)."""

    def __init__(self, message: str):
        super().__init__(message, permanent=False)
