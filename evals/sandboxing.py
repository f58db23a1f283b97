"""Map Django settings onto the sandbox's process-wide configuration."""

import logging
from collections.abc import Callable

from django.conf import settings

import sandbox
from iofold.lib import metrics
from sandbox import Limits

logger = logging.getLogger(__name__)

LOCAL_BACKEND_WARNING = (
    "SANDBOX_ALLOW_LOCAL_BACKEND is on with DEBUG off: eval code may run without isolation "
    "if SANDBOX_BACKEND=local. Use it only on a machine where nsjail cannot run."
)


def sandbox_limits() -> Limits:
    """Return the sandbox limits from settings (per-trace timeout, memory)."""
    return Limits(
        trace_timeout_s=float(settings.SANDBOX_TIMEOUT_PER_TRACE),
        memory_mb=int(settings.SANDBOX_MEMORY_MB),
    )


def configure_sandbox() -> None:
    """Configure the sandbox from settings; the local backend only in DEBUG or when allowed."""
    allow_local = True if settings.DEBUG else bool(settings.SANDBOX_ALLOW_LOCAL_BACKEND)
    if not settings.DEBUG and settings.SANDBOX_ALLOW_LOCAL_BACKEND:
        logger.warning(LOCAL_BACKEND_WARNING)
    sandbox.configure(
        backend=settings.SANDBOX_BACKEND, allow_local=allow_local, limits=sandbox_limits()
    )


def prepare_sandbox() -> None:
    """Do the sandbox's start-up work in this process now (a worker, before its first task).

    A sandbox that cannot run is only logged here: each run reports it as it does today.
    """
    try:
        sandbox.prepare(sandbox_limits())
    except sandbox.SandboxError as exc:
        logger.warning("sandbox not ready at worker start: %s", exc.message)


def metered(run: Callable[..., list], *args, **kwargs) -> list:
    """Call ``sandbox.run`` or ``run_json``, counting the batch and its verdicts in metrics."""
    with metrics.Stopwatch() as watch:
        try:
            results = run(*args, **kwargs)
        except sandbox.SandboxError:
            metrics.SANDBOX_RUNS.labels("unavailable").inc()
            raise
    metrics.observe_sandbox(results, seconds=watch.seconds)
    return results
