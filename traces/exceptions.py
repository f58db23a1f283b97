from iofold.exceptions import ApplicationError


class TraceError(ApplicationError):
    """A rule of traces, eval sets or labels was broken; the message is shown to the user."""


class TraceNotFound(TraceError):
    """Traces named by id don't exist in the workspace."""

    def __init__(self, missing: list[int]):
        super().__init__(f"Unknown trace id(s): {', '.join(map(str, missing))}.")
        self.missing = missing


class LabelNotYours(TraceError):
    """Only the label's reviewer, or a workspace owner or admin, may change it."""

    def __init__(self):
        super().__init__("Only its reviewer or a workspace admin can change this label.")


class ResponsesUnavailable(Exception):
    """OpenAI refused or could not answer a response read: try again later (with back-off).

    Not an ``ApplicationError``: no user sees it; the source's page shows the reason.
    """
