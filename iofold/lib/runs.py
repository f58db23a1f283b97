"""One lifecycle for background runs (sync runs, generations, eval runs).

A run row is created queued, claimed by the process that carries it out, kept alive by a
heartbeat while it works, and finished or failed. A run whose process died is taken over
at once, by the next worker that receives its task or by the recovery sweep that
enqueues it again (at worker start-up, on a schedule, and when a user asks for the same
work), instead of waiting out a long timeout:

- the row's ``owner`` names the process (host, pid, the process's start time, boot and
  pid namespace), so any process on the same machine can tell at once that the owner is
  gone, even if its pid was reused;
- a thread beats ``heartbeat_at`` every few seconds while the run works, so a process
  elsewhere can tell from a few missed heartbeats.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection, connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone

logger = logging.getLogger(__name__)


class RunStatus(models.TextChoices):
    """Where a background run is (sync runs, generations and eval runs share these)."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
# A queued run no worker has claimed for this long is enqueued again: its message may be
# lost (the broker was down when it was sent, a killed worker had received it). Far longer
# than a run waits in a normally busy queue; a second message for it is harmless anyway.
REQUEUE_AFTER = timedelta(minutes=10)
# A run whose worker died this many times is failed, not taken over again: it is likely
# what kills the worker (a poison run).
MAX_TAKEOVERS = 3
GIVEN_UP = "The worker stopped {n} times while running this; it was not tried again."


def heartbeat_interval() -> float:
    """Return the seconds between two heartbeats of a running run."""
    return settings.IOFOLD_RUN_HEARTBEAT_SECONDS


def stale_after() -> timedelta:
    """Return how long a running run may go without a heartbeat before it is taken over."""
    return timedelta(seconds=settings.IOFOLD_RUN_STALE_SECONDS)


# --- who owns a run --------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:12]


def _pid_namespace() -> str:
    try:
        return "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        return ""


def _process_start(pid: int) -> str:
    """Return the start time of a live process (clock ticks since boot), "" if it is gone."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    # The command name may contain spaces and parentheses; the fields after it do not.
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):  # a zombie has finished
        return ""
    return fields[19]


def current_owner() -> str:
    """Return this process's name for the runs it claims: host, pid, start, boot, pid ns."""
    pid = os.getpid()
    host = socket.gethostname().replace(":", "-")[:60]
    return f"{host}:{pid}:{_process_start(pid)}:{_boot_id()}:{_pid_namespace()}"


def owner_is_gone(owner: str) -> bool:
    """Return whether the process ``owner`` is known to have exited.

    Only a process on this machine and in this pid namespace can be checked; for any
    other, this returns False and the heartbeat decides.
    """
    parts = owner.split(":")
    if len(parts) != 5:
        return False
    _host, pid, start, boot, namespace = parts
    if not (pid.isdigit() and start and boot) or (boot, namespace) != (
        _boot_id(),
        _pid_namespace(),
    ):
        return False
    # A pid reused by a newer process has another start time.
    return _process_start(int(pid)) != start


def is_orphaned(run: BackgroundRun, *, now: datetime | None = None) -> bool:
    """Return whether a running run has lost its process: gone, or silent for too long."""
    now = now or timezone.now()
    last_seen = run.heartbeat_at or run.created_at
    return last_seen < now - stale_after() or owner_is_gone(run.owner)


# --- the model and its queryset --------------------------------------------------------------


class BackgroundRun(models.Model):
    """Abstract base of rows carried out by a Celery task; the concrete model adds ``status``
    (queued, running, succeeded, failed) and ``error``."""

    # The concrete model's ``status`` takes its choices from here: ``run.Status.RUNNING``.
    Status = RunStatus

    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The process that claimed it (see current_owner); empty while queued.
    owner = models.CharField(max_length=200, blank=True)
    # How many times it was taken over from a process that died.
    takeovers = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def is_final(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)


@dataclass(frozen=True)
class Claim:
    taken_over: bool


class BackgroundRunQuerySet(models.QuerySet):
    """Claim, heartbeat, take over and fail background runs with conditional UPDATEs."""

    def unfinished(self):
        return self.filter(status__in=ACTIVE)

    def stale(self, *, older_than: timedelta):
        """Return unfinished runs with no heartbeat (or enqueue) for ``older_than``."""
        cutoff = timezone.now() - older_than
        return self.unfinished().filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
        )

    def claim(self, pk: int, **fields) -> Claim | None:
        """Mark run ``pk`` running for this process; None if another live process has it.

        A queued run is claimed; a running one whose process is gone is taken over (and
        failed instead once it has been taken over MAX_TAKEOVERS times). ``fields`` are
        set along with the claim.
        """
        now, owner = timezone.now(), current_owner()
        if self.filter(pk=pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, owner=owner, **fields
        ):
            return Claim(taken_over=False)
        run = self.filter(pk=pk, status=RunStatus.RUNNING).first()
        if run is None or not is_orphaned(run, now=now):
            return None
        if run.takeovers >= MAX_TAKEOVERS:
            self._as_seen(run).fail(GIVEN_UP.format(n=run.takeovers + 1))
            return None
        # Only one of several processes taking over at the same moment wins the row.
        taken = self._as_seen(run).update(
            owner=owner, heartbeat_at=now, takeovers=F("takeovers") + 1, **fields
        )
        if taken:
            logger.warning(
                "run taken over model=%s run=%s from=%s", self.model.__name__, pk, run.owner
            )
        return Claim(taken_over=True) if taken else None

    def beat(self, pk: int, *, owner: str) -> bool:
        """Record that ``owner`` is still working on run ``pk``; False if it no longer has it."""
        return bool(
            self.filter(pk=pk, status=RunStatus.RUNNING, owner=owner).update(
                heartbeat_at=timezone.now()
            )
        )

    def fail(self, error: str, **fields) -> int:
        """Mark these runs failed with ``error`` unless they already finished."""
        return self.unfinished().update(
            status=RunStatus.FAILED, error=error, finished_at=timezone.now(), **fields
        )

    def recover(
        self,
        *,
        enqueue: Callable[[BackgroundRun], object],
        include_queued: bool = False,
        **release_fields,
    ) -> int:
        """Enqueue again the runs whose process is gone; return how many were enqueued.

        Running runs whose process died or went silent go back to queued (with
        ``release_fields``). Queued runs no worker claimed for REQUEUE_AFTER are enqueued
        again, and with ``include_queued`` (when a worker starts) all queued runs: the
        file-system broker deletes a message when a worker receives it, and Redis hides it
        for hours, so a worker killed with messages it had received (a retry waiting for
        its countdown) loses them, and a message sent while the broker was down never
        arrived. A second message for the same run is harmless: only one claim succeeds.
        """
        now = timezone.now()
        recovered = []
        for run in self.filter(status=RunStatus.RUNNING):
            if not is_orphaned(run, now=now):
                continue
            if run.takeovers >= MAX_TAKEOVERS:
                self._as_seen(run).fail(GIVEN_UP.format(n=run.takeovers + 1))
                continue
            if self._as_seen(run).update(
                status=RunStatus.QUEUED,
                owner="",
                heartbeat_at=now,
                takeovers=F("takeovers") + 1,
                **release_fields,
            ):
                recovered.append(run)
        queued = self.filter(status=RunStatus.QUEUED).exclude(pk__in=[r.pk for r in recovered])
        if include_queued:
            recovered += list(queued)
        else:
            recovered += self._waited_too_long(queued, now=now)
        for run in recovered:
            transaction.on_commit(lambda run=run: enqueue(run))
        if recovered:
            logger.warning(
                "runs enqueued again model=%s count=%d", self.model.__name__, len(recovered)
            )
        return len(recovered)

    def _waited_too_long(self, queued, *, now: datetime) -> list[BackgroundRun]:
        """Return the queued runs unclaimed for REQUEUE_AFTER, stamped as enqueued now."""
        cutoff = now - REQUEUE_AFTER
        waited = queued.filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
        )
        # The heartbeat of a queued run says when it was last enqueued: the next sweep
        # leaves it alone, and only one of two sweeps at once sends it.
        return [
            run
            for run in waited
            if self.filter(
                pk=run.pk, status=RunStatus.QUEUED, heartbeat_at=run.heartbeat_at
            ).update(heartbeat_at=now)
        ]

    def _as_seen(self, run: BackgroundRun):
        """Return the row only if it has not changed since ``run`` was read from it."""
        return self.filter(
            pk=run.pk, status=run.status, owner=run.owner, heartbeat_at=run.heartbeat_at
        )


# --- the heartbeat ---------------------------------------------------------------------------


class Heartbeat(threading.Thread):
    """Beat a running run's heartbeat every few seconds until stopped."""

    def __init__(self, run: BackgroundRun, *, owner: str) -> None:
        super().__init__(name=f"heartbeat-{type(run).__name__}-{run.pk}", daemon=True)
        self.runs = type(run)._default_manager
        self.pk, self.owner = run.pk, owner
        self.interval = heartbeat_interval()
        self.stopped = threading.Event()
        self.lost = False  # the run finished, failed or was taken over by another process

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                try:
                    if not self.runs.beat(self.pk, owner=self.owner):
                        self.lost = True
                        return
                except DatabaseError:
                    # A busy database delays a beat; the next one may get through.
                    logger.warning("heartbeat failed run=%s", self.pk, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only


@contextmanager
def keep_alive(run: BackgroundRun) -> Iterator[Heartbeat | None]:
    """Beat the heartbeat of a claimed run from a thread while the block runs."""
    if transaction.get_connection().in_atomic_block:
        # The claim is not committed: no other process can see the run, nor could the
        # thread's own connection (SQLite would make it wait for the lock).
        yield None
        return
    heartbeat = Heartbeat(run, owner=run.owner or current_owner())
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=heartbeat.interval + 30)


def commit_asynchronously() -> None:
    """Let the current transaction's commit return before its WAL reaches the disk.

    For a step of a run that commits its work with its own progress: a database crash can
    lose at most the last few such steps whole, and the run does them again. Each commit
    then no longer waits for a disk flush. Does nothing but on PostgreSQL.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
