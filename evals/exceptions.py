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


def sandbox_failure(exc: Exception, what: str = "run the eval") -> EvalError:
    """Return the EvalError for a sandbox that could not run at all (transient or not)."""
    message = f"The sandbox could not {what}: {getattr(exc, 'message', exc)}"
    if getattr(exc, "permanent", True):
        return EvalError(message)
    return TransientEvalError(message)
