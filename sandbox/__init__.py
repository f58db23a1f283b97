"""Validate and run untrusted eval code in a sandbox. Plain Python: no Django here."""

from sandbox.config import Limits, configure, get_settings
from sandbox.errors import BackendRefused, SandboxError, SandboxUnavailable
from sandbox.runner import Result, drop_spare, prepare, run, run_json, start_ahead
from sandbox.validate import Problem, validate


def check() -> None:
    """Start one empty jail with the current configuration, or raise what is missing."""
    from sandbox import jail

    settings = get_settings()
    if settings.backend == "nsjail":
        jail.check(settings, settings.limits)


__all__ = [
    "BackendRefused",
    "Limits",
    "Problem",
    "Result",
    "SandboxError",
    "SandboxUnavailable",
    "check",
    "configure",
    "drop_spare",
    "get_settings",
    "prepare",
    "run",
    "run_json",
    "start_ahead",
    "validate",
]
