"""Shared fixtures: the cast (owner, admin, member, viewer, outsider), clients, a real worker."""

import contextlib
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from workspaces.models import Membership

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _private_hosts_allowed(settings):
    """Let outbound connections reach the fake servers on 127.0.0.1, as in development.

    Tests of the production refusal switch it off themselves.
    """
    settings.IOFOLD_ALLOW_PRIVATE_HOSTS = True
    settings.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = []


@pytest.fixture
def production(settings):
    """The production outbound policy: no private addresses, nothing allowlisted."""
    settings.IOFOLD_ALLOW_PRIVATE_HOSTS = False
    settings.IOFOLD_PRIVATE_HOSTS_ALLOWLIST = []
    return settings


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    """No API throttles and no ingest budget: tests send bursts no client would.

    Tests of the limits (tests/test_rate_limits.py) set them back themselves.
    """
    settings.IOFOLD_API_THROTTLE_RATES = {}
    settings.IOFOLD_INGEST_TRACES_PER_MINUTE = 0


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Start each test with an empty cache: allauth's rate limits live there, and the
    matrix's parts (also kept per process)."""
    from django.core.cache import cache

    from evals.matrix.index import forget_parts_seen

    cache.clear()
    forget_parts_seen()


@pytest.fixture
def workspace(db):
    return WorkspaceFactory(name="Acme", slug="acme")


@pytest.fixture
def other_workspace(db):
    return WorkspaceFactory(name="Globex", slug="globex")


def _member(workspace, email, role):
    return MembershipFactory(workspace=workspace, user=UserFactory(email=email), role=role).user


@pytest.fixture
def owner(workspace):
    return _member(workspace, "owner@acme.test", Membership.Role.OWNER)


@pytest.fixture
def admin_user(workspace):
    return _member(workspace, "admin@acme.test", Membership.Role.ADMIN)


@pytest.fixture
def member(workspace):
    return _member(workspace, "member@acme.test", Membership.Role.MEMBER)


@pytest.fixture
def viewer(workspace):
    return _member(workspace, "viewer@acme.test", Membership.Role.VIEWER)


@pytest.fixture
def outsider(other_workspace):
    """Owner of another workspace: must never see anything of ``workspace``."""
    return _member(other_workspace, "outsider@globex.test", Membership.Role.OWNER)


@pytest.fixture
def login(client):
    """Return a function that logs ``user`` into the test client and returns the client."""

    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def api_client():
    return APIClient()


def _database_url_for_worker() -> str:
    db = django_settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}{port}/{db['NAME']}"


class WorkerProcess:
    """A real Celery worker process that a test can kill (SIGKILL) and start again."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None
        self.log_offset = 0
        self.starts = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self):
        return self.proc.poll()

    def start(self) -> "WorkerProcess":
        """Start a worker and wait until it consumes; its output goes on in the same log."""
        self.log_offset = offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "iofold",
                    "worker",
                    "--queues=default,sync,generate,execute",
                    "--pool=solo",
                    "--loglevel=INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=django_settings.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + 60
        while " ready." not in self.log_path.read_text()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"Celery worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        return self

    # Celery logs one "received" line per delivery and one more line when it is done with it
    # (succeeded, raised, retry, ignored, rejected).
    _TASK_LINE = re.compile(r"^.*Task \S+\[[^\]]+\] (received)?", re.MULTILINE)

    def _busy(self) -> bool:
        from iofold.celery import app

        # Only this process's lines: a killed worker's unfinished tasks are delivered again.
        lines = self._TASK_LINE.findall(self.log_path.read_text()[self.log_offset :])
        received = sum(1 for word in lines if word)
        if received != len(lines) - received:
            return True
        with app.connection_for_write() as conn:
            for queue in ("default", "sync", "generate", "execute"):
                with contextlib.suppress(Exception):  # a queue never declared holds nothing
                    if conn.default_channel.queue_declare(queue, passive=True).message_count:
                        return True
        return False

    def wait_until_idle(self, timeout: float = 30) -> bool:
        """Wait until the worker has finished what it holds and the queues are empty;
        return whether it has (False: still at work after ``timeout``).

        A test's last task may queue follow-up work (a generation's judge comparison); left
        running, it writes while the test database is flushed, and the flush deadlocks.
        """
        deadline = time.monotonic() + timeout
        quiet_checks = 0
        while quiet_checks < 2 and time.monotonic() < deadline:
            # Twice in a row: a message just taken off a queue is logged a moment later.
            quiet_checks = 0 if self._busy() else quiet_checks + 1
            time.sleep(0.2)
        return quiet_checks >= 2

    def kill(self) -> None:
        """Kill the worker as the OOM killer would: nothing gets to clean up or acknowledge."""
        self.proc.kill()
        self.proc.wait(timeout=20)

    def terminate(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start a real Celery worker on the test database and the configured broker.

    Tests using it need ``transactional_db`` so the worker sees their rows. A test may
    ``kill()`` it and ``start()`` it again; later tests get the running one.
    """
    # Drop messages left by an earlier, interrupted run so they can't hit this database.
    _purge_queues()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url_for_worker(),
        # The worker talks to fake servers on 127.0.0.1, whatever DEBUG says.
        "IOFOLD_ALLOW_PRIVATE_HOSTS": "true",
    }
    env.update(getattr(celery_worker_process, "extra_env", {}))
    worker = WorkerProcess(env, tmp_path_factory.mktemp("worker") / "worker.log").start()
    yield worker
    if worker.poll() is None:
        worker.terminate()


def _purge_queues() -> None:
    from iofold.celery import app

    with app.connection_for_write() as conn:
        for queue in ("default", "sync", "generate", "execute"):
            # A queue that was never declared has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Before a worker test's database is flushed, let the worker finish what it is doing.

    A worker still at work after the wait (a slow follow-up on a loaded machine) is killed
    and started again, its queues emptied: nothing of this test may write during the
    flush, nor run later on the next test's rows.
    """
    worker = getattr(item, "funcargs", {}).get("celery_worker_process")
    running = worker is not None and worker.proc is not None and worker.poll() is None
    if running and not worker.wait_until_idle():
        warnings.warn(f"the worker was still busy after {item.nodeid}: restarted", stacklevel=1)
        worker.kill()
        _purge_queues()
        worker.start()
    return (yield)


def wait_for(predicate, *, timeout: float = 30, interval: float = 0.2, message: str = ""):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(message or "condition not met in time")


def dead_owner() -> str:
    """Return the run owner name (iofold/lib/runs.py) of a process that has exited."""
    from iofold.lib import runs

    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE
    )
    owner = runs.current_owner().split(":")
    owner[1], owner[2] = str(proc.pid), runs._process_start(proc.pid)
    proc.kill()
    proc.wait()
    return ":".join(owner)
