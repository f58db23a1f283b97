"""Load test: 100 simulated users against the production server configuration.

Bounded and self-stopping. Creates its own PostgreSQL database (named per run, dropped at
the end), loads one workspace (traces, an eval set with labels, two eval versions with
verdicts for the matrix, an API token), starts the image's web server on 127.0.0.1
(gunicorn with ``iofold/gunicorn_conf.py``, ``DEBUG=false``, Redis as cache and broker)
and one Celery worker, then:

1. mixed phase: ``--users`` simulated users, each looping for ``--seconds`` over a mix of
   the trace list, a trace's page, the review card, recording a label, the comparison
   matrix, ingesting a batch of 100 traces (API) and starting a batch run of 50 stored
   traces (API, answered 202), with a think time of ``--think`` seconds (uniform 0.5× to
   1.5×) between two requests of one user;
2. ingest phase: ``--ingest-clients`` clients post batches of 1,000 new traces back to back
   for ``--ingest-seconds``: traces stored per second.

Reports the CPU milliseconds per request that the web server, the worker, PostgreSQL's
backends and this client spent in the mixed phase (and per 1,000 traces in the ingest
phase): unlike latency, they hardly depend on what else shares the machine. A backend
that exits takes its CPU time with it, so the PostgreSQL figure undercounts once
connections are recycled (``DATABASE_CONN_MAX_AGE``, 60 s: keep ``--seconds`` under it
for that figure).

Reports requests/s, p50/p95/p99 and error rate per endpoint (an error: a status other than
the one the endpoint answers with, or no answer within 30 s). ``--server asgi`` runs the
same app under uvicorn workers (as many as gunicorn's) to compare with gthread.

    python bench/load.py [--quick] [--users 100] [--seconds 60] [--server gthread|asgi]
    (PG_URL defaults to postgres://postgres@127.0.0.1:5432, REDIS_URL to
     redis://127.0.0.1:6379/6)

Goals on the 2-core machine: 0 errors, page p95 < 500 ms at 100 users, ingest ≥ 2,000
traces/s. Last line of output: one JSON object.
"""

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from json import dumps as _dumps
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import PG_URL, run_on_scratch_database  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/6")
PAGE_GOAL_MS = 500.0
INGEST_GOAL = 2000.0
PAGES = ("trace list", "trace detail", "review next", "review label", "matrix")
# Relative weights of the mixed phase's actions.
MIX = {
    "trace list": 25,
    "trace detail": 20,
    "review next": 15,
    "review label": 10,
    "matrix": 10,
    "ingest 100": 10,
    "batch run": 10,
}
EXPECTED = {"ingest 100": 201, "batch run": 202}
LABEL_URL = re.compile(r"/review/(\d+)/label/")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trace(n: int, prefix: str) -> dict:
    return {
        "id": f"{prefix}-{n}",
        "timestamp": (
            dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n)
        ).isoformat(),
        "name": "load",
        "input": {"question": f"where is order {n}?"},
        "output": "Your refund is on its way." if n % 3 else "I cannot help with that.",
        "steps": [{"id": "a", "parent_id": None, "type": "agent", "name": "agent", "error": None}],
        "metadata": {},
        "tags": ["load"],
    }


def seed(n_traces: int, n_labels: int) -> dict:
    """Load the workspace (reusing bench/review.py's loader) and what the users need."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from bench.review import load
    from evals.models import Eval, EvalExecution
    from traces.models import Feedback
    from workspaces.services import issue_token

    workspace, eval_set, _filter_set, users = load(n_traces, n_labels)
    labelled = sorted(
        set(Feedback.objects.filter(eval_set=eval_set).values_list("trace_id", flat=True))
    )
    code = 'def eval_fn(trace):\n    return "cannot" not in str(trace.get("output")), "ok"\n'
    evals = [
        Eval.objects.create(
            workspace=workspace,
            eval_set=eval_set,
            version=v,
            code=code,
            status="active" if v == 2 else "draft",
            activated_at=timezone.now() if v == 2 else None,
        )
        for v in (1, 2)
    ]
    rng = random.Random(3)
    EvalExecution.objects.bulk_create(
        EvalExecution(
            workspace=workspace,
            eval=e,
            trace_id=pk,
            passed=rng.random() < 0.7,
            reason="seeded",
            duration_ms=0.2,
        )
        for e in evals
        for pk in labelled
    )
    # Written an hour before the run, as a workspace's data is: not within the matrix's
    # settle window (MATRIX_SETTLE_SECONDS), where every row would count as just changed.
    from django.db.models import F

    from traces.models import Trace

    # Traces as ingestion stores them: written once (updated when created).
    hour = dt.timedelta(hours=1)
    Trace.objects.filter(workspace=workspace).update(
        created_at=F("created_at") - hour, updated_at=F("created_at") - hour
    )
    for model in (Feedback, EvalExecution):
        model.objects.filter(workspace=workspace).update(
            created_at=F("created_at") - hour, updated_at=F("updated_at") - hour
        )
    # The active eval's set is hand-picked: ingested traces are not in it, so ingestion
    # queues no automatic runs and the worker only carries the batch runs.
    sessions = []
    for user in users:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append(store.session_key)
    _, token = issue_token(workspace=workspace, name="load", created_by=users[0], role="member")
    trace_ids = list(Trace.objects.filter(workspace=workspace).values_list("id", flat=True))
    return {
        "slug": workspace.slug,
        "eval_set": eval_set.pk,
        "eval": evals[0].pk,
        "sessions": sessions,
        "token": token,
        "trace_ids": trace_ids,
    }


def set_keys() -> None:
    """Give this process and the servers the same keys: sessions and tokens depend on them."""
    from cryptography.fernet import Fernet

    os.environ["SECRET_KEY"] = secrets.token_urlsafe(50)
    os.environ["IOFOLD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()


def server_env(db_url: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "CACHE_URL": REDIS_URL,
        "CELERY_BROKER_URL": REDIS_URL,
        # One workspace takes every batch here: its ingestion quota (120,000 traces a
        # minute by default) would answer the full run's ingest phase 429, which measures
        # the quota, not the server.
        "IOFOLD_INGEST_TRACES_PER_MINUTE": "100000000",
        "DJANGO_SETTINGS_MODULE": "iofold.settings",
    }


def start_server(kind: str, env: dict, port: int, log: Path) -> subprocess.Popen:
    from iofold import gunicorn_conf

    if kind == "asgi":
        cmd = [
            sys.executable, "-m", "uvicorn", "iofold.asgi:application",
            "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(gunicorn_conf.workers), "--no-access-log", "--lifespan", "off",
        ]  # fmt: skip
    else:
        cmd = [
            sys.executable, "-m", "gunicorn", "iofold.wsgi:application",
            "--config", "python:iofold.gunicorn_conf", "--access-logfile", "/dev/null",
        ]  # fmt: skip
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop(proc)
    raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")


def start_worker(env: dict, log: Path, nice: int) -> subprocess.Popen:
    # Batch runs are background work: at a lower CPU priority the worker takes what the
    # pages leave, as on a host that runs the web and a worker side by side.
    cmd = [
        "nice", "-n", str(nice), sys.executable, "-m", "celery", "-A", "iofold", "worker",
        "--queues=default,execute",
        "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _connections() -> int:
    """PostgreSQL connections open to this run's database (web threads, worker, this one)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def _cpu_split(server, worker, db_name: str) -> dict:
    return {
        "web": cpu_seconds(server.pid),
        "worker": cpu_seconds(worker.pid),
        "postgres": cpu_seconds(db_name=db_name),
        "client": time.process_time(),
    }


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def cpu_seconds(pgid: int = 0, db_name: str = "") -> float:
    """CPU seconds used so far by a process group's live processes, or a database's backends.

    Busy time per request does not depend on what else shares the machine the way latency
    does: the figure to compare runs by.
    """
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if db_name:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                if not cmdline.startswith(b"postgres:") or db_name.encode() not in cmdline:
                    continue
        except OSError:  # gone, or not ours to read
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # After the command: state, ppid, pgrp, ... utime and stime are fields 14 and 15.
        if db_name or int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


# --- the client ----------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.error_examples: dict[str, str] = {}

    def record(self, name: str, ms: float, ok: bool, detail: str = "") -> None:
        self.samples.setdefault(name, []).append(ms)
        if not ok:
            self.errors[name] = self.errors.get(name, 0) + 1
            self.error_examples.setdefault(name, detail)

    def report(self, seconds: float) -> dict:
        out = {}
        for name, values in sorted(self.samples.items()):
            values = sorted(values)

            def rank(p, values=values):
                return round(values[max(0, math.ceil(len(values) * p) - 1)], 1)

            errors = self.errors.get(name, 0)
            out[name] = {
                "requests": len(values),
                "rps": round(len(values) / seconds, 1),
                "p50_ms": rank(0.50),
                "p95_ms": rank(0.95),
                "p99_ms": rank(0.99),
                "error_rate": round(errors / len(values), 4),
            }
        return out


class _Response:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class Client:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, for 127.0.0.1 only.

    httpx spent about 9 ms of CPU per request here: on a 2-core machine that also runs the
    server, the load generator took a fifth of the CPU the server was measured on. This
    client keeps idle connections for reuse, sends again once on an idle connection the
    server closed, and reads Content-Length and chunked bodies.
    """

    def __init__(self, base: str, timeout: float) -> None:
        parts = urlsplit(base)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        for _reader, writer in self.idle:
            writer.close()
        self.idle.clear()

    async def get(self, url: str, **kwargs) -> _Response:
        return await self.request("GET", url, **kwargs)

    async def request(self, method, url, *, headers=None, json=None, data=None) -> _Response:
        body, head = b"", {"Host": f"{self.host}:{self.port}"}
        if json is not None:
            body, head["Content-Type"] = _dumps(json).encode(), "application/json"
        elif data is not None:
            body = urlencode(data).encode()
            head["Content-Type"] = "application/x-www-form-urlencoded"
        head.update(headers or {})
        head["Content-Length"] = str(len(body))
        lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
        raw = f"{method} {url} HTTP/1.1\r\n{lines}\r\n".encode() + body
        return await asyncio.wait_for(self._exchange(raw), self.timeout)

    async def _exchange(self, raw: bytes) -> _Response:
        while True:
            reused = bool(self.idle)
            if reused:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(raw)
                await writer.drain()
                status = await reader.readline()
                if not status:
                    raise ConnectionResetError("the server closed the connection")
            except (ConnectionError, OSError):
                writer.close()
                if reused:
                    continue  # an idle connection the server had closed: open a new one
                raise
            length, chunked, close = 0, False, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and "chunked" in value:
                    chunked = True
                elif name == "connection" and value == "close":
                    close = True
            if chunked:
                parts = []
                while size := int((await reader.readline()).split(b";")[0], 16):
                    parts.append(await reader.readexactly(size))
                    await reader.readline()
                await reader.readline()
                content = b"".join(parts)
            else:
                content = await reader.readexactly(length)
            if close:
                writer.close()
            else:
                self.idle.append((reader, writer))
            return _Response(int(status.split()[1]), content)


async def _request(client, stats, name, method, url, expected=200, **kwargs):
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)
    except Exception as exc:  # a timeout or a refused connection is an error, not a crash
        stats.record(name, (time.perf_counter() - started) * 1000, False, repr(exc))
        return None
    ms = (time.perf_counter() - started) * 1000
    ok = response.status_code == expected
    stats.record(name, ms, ok, f"{response.status_code} {response.text[:200]}")
    return response


async def user(n, client, ctx, stats, deadline, think, counter):
    rng = random.Random(n)
    session = ctx["sessions"][n % len(ctx["sessions"])]
    csrf = secrets.token_hex(16)
    cookies = f"sessionid={session}; csrftoken={csrf}"
    page = {"Cookie": cookies}
    api = {"Authorization": f"Bearer {ctx['token']}"}
    w = f"/w/{ctx['slug']}"
    review = f"{w}/traces/eval-sets/{ctx['eval_set']}/review/"
    names, weights = list(MIX), list(MIX.values())
    await asyncio.sleep(rng.uniform(0, think))  # users arrive spread over one think time
    while time.monotonic() < deadline:
        action = rng.choices(names, weights)[0]
        if action == "trace list":
            query = rng.choice(["", "", "?q=refund", "?tag=billing"])
            await _request(client, stats, action, "GET", f"{w}/traces/{query}", headers=page)
        elif action == "trace detail":
            pk = rng.choice(ctx["trace_ids"])
            await _request(client, stats, action, "GET", f"{w}/traces/{pk}/", headers=page)
        elif action == "review next":
            await _request(client, stats, action, "GET", review, headers=page)
        elif action == "review label":
            card = await client.get(review, headers=page)
            found = LABEL_URL.search(card.text) if card.status_code == 200 else None
            if found:
                await _request(
                    client, stats, action, "POST",
                    f"{review}{found.group(1)}/label/",
                    headers={**page, "X-CSRFToken": csrf, "HX-Request": "true"},
                    data={"rating": rng.choice(["positive", "negative"])},
                )  # fmt: skip
        elif action == "matrix":
            url = f"{w}/evals/sets/{ctx['eval_set']}/matrix/"
            await _request(client, stats, action, "GET", url, headers=page)
        elif action == "ingest 100":
            start = next(counter) * 100
            body = {"traces": [_trace(start + i, f"mix{n}") for i in range(100)]}
            await _request(
                client, stats, action, "POST", "/api/v1/traces/", EXPECTED[action],
                headers=api, json=body,
            )  # fmt: skip
        elif action == "batch run":
            ids = rng.sample(ctx["trace_ids"], 50)
            await _request(
                client, stats, action, "POST", f"/api/v1/evals/{ctx['eval']}/run",
                EXPECTED[action], headers=api, json={"trace_ids": ids},
            )  # fmt: skip
        await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))


async def mixed_phase(base, ctx, users, seconds, think, warm_up, cpu) -> tuple:
    import itertools

    stats = Stats()
    counter = itertools.count()
    async with Client(base, timeout=30) as client:
        # Warm-up, not timed: every server worker compiles its templates and opens its
        # connections on its first requests, as it does once after a deploy.
        await asyncio.gather(
            *(
                user(n, client, ctx, Stats(), time.monotonic() + warm_up, 0.05, counter)
                for n in range(8)
            )
        )
        cpu_before = cpu()
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(user(n, client, ctx, stats, deadline, think, counter) for n in range(users))
        )
        elapsed = time.monotonic() - started
        cpu_used = {k: v - cpu_before[k] for k, v in cpu().items()}
    return stats, elapsed, cpu_used


async def ingest_phase(base, token, clients, seconds) -> tuple[dict, float, int]:
    stats = Stats()
    stored = 0

    async def one(n):
        nonlocal stored
        batch = 0
        async with Client(base, timeout=60) as client:
            while time.monotonic() < deadline:
                body = {"traces": [_trace(batch * 1000 + i, f"bulk{n}") for i in range(1000)]}
                batch += 1
                response = await _request(
                    client, stats, "ingest 1000", "POST", "/api/v1/traces/", 201,
                    headers={"Authorization": f"Bearer {token}"}, json=body,
                )  # fmt: skip
                if response is not None and response.status_code == 201:
                    stored += response.json()["created"]

    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(one(n) for n in range(clients)))
    return stats, time.monotonic() - started, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between requests")
    parser.add_argument("--traces", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument("--ingest-clients", type=int, default=4)
    parser.add_argument("--ingest-seconds", type=float, default=None)
    parser.add_argument("--server", choices=["gthread", "asgi"], default="gthread")
    parser.add_argument(
        "--worker-nice", type=int, default=10, help="the Celery worker's niceness (0: as the web)"
    )
    args = parser.parse_args()
    seconds = args.seconds or (15 if args.quick else 60)
    ingest_seconds = args.ingest_seconds or (5 if args.quick else 20)
    n_traces = args.traces or (5_000 if args.quick else 20_000)
    n_labels = args.labels or (1_000 if args.quick else 4_000)
    db_name = f"iofold_bench_load_{os.getpid()}_{int(time.time())}"
    db_url = f"{PG_URL}/{db_name}"
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / db_name
    logs.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "bench/load.py", *sys.argv[1:]])
    result: dict = {}

    def body() -> None:
        import logging

        from django.core.management import call_command
        from django.db import connections

        logging.getLogger("httpx").setLevel(logging.WARNING)
        call_command("migrate", verbosity=0)
        t0 = time.perf_counter()
        ctx = seed(n_traces, n_labels)
        print(
            f"loaded {n_traces:,} traces, {n_labels:,} labels in {time.perf_counter() - t0:.1f} s"
        )
        connections.close_all()
        env = {**server_env(db_url), "STATIC_ROOT": str(logs / "static")}
        # The production static files storage serves from a manifest, as the image does.
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
            cwd=ROOT, env=env, check=True,
        )  # fmt: skip
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()  # this bench's own db: no stale tasks
        port = _free_port()
        server = start_server(args.server, env, port, logs / "server.log")
        worker = start_worker(env, logs / "worker.log", args.worker_nice)
        from iofold import gunicorn_conf

        shape = (
            f"gunicorn gthread, {gunicorn_conf.workers} workers × {gunicorn_conf.threads} threads"
            if args.server == "gthread"
            else f"uvicorn, {gunicorn_conf.workers} workers"
        )
        print(f"server: {shape} on 127.0.0.1:{port}; 1 Celery worker; logs in {logs}")
        try:
            base = f"http://127.0.0.1:{port}"
            warm_up = 5 if args.quick else 15
            stats, elapsed, cpu_mixed = asyncio.run(
                mixed_phase(
                    base, ctx, args.users, seconds, args.think, warm_up,
                    lambda: _cpu_split(server, worker, db_name),
                )
            )  # fmt: skip
            mixed = stats.report(elapsed)
            # Persistent connections stay open (CONN_MAX_AGE): what the web tier holds.
            connections = _connections()
            cpu_before = _cpu_split(server, worker, db_name)
            ingest_stats, ingest_elapsed, stored = asyncio.run(
                ingest_phase(base, ctx["token"], args.ingest_clients, ingest_seconds)
            )
            cpu_ingest = {
                k: round((v - cpu_before[k]) * 1e6 / max(1, stored), 1)
                for k, v in _cpu_split(server, worker, db_name).items()
            }
            ingest = ingest_stats.report(ingest_elapsed)
        finally:
            stop(server)
            stop(worker)
        total = sum(v["requests"] for v in mixed.values())
        cpu_per_request = {k: round(v * 1000 / max(1, total), 1) for k, v in cpu_mixed.items()}
        errors = sum(stats.errors.values()) + sum(ingest_stats.errors.values())
        print(f"\nmixed phase: {args.users} users, think {args.think} s, {elapsed:.0f} s, "
              f"{total / elapsed:.1f} req/s")  # fmt: skip
        print(f"{'endpoint':<14} {'reqs':>6} {'req/s':>6} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'p99 ms':>8} {'errors':>7}")  # fmt: skip
        for name, row in {**mixed, **ingest}.items():
            print(
                f"{name:<14} {row['requests']:>6} {row['rps']:>6} {row['p50_ms']:>8} "
                f"{row['p95_ms']:>8} {row['p99_ms']:>8} {row['error_rate']:>7.2%}"
            )
        print(
            "CPU ms per request of the mixed phase: "
            + ", ".join(f"{k} {v}" for k, v in cpu_per_request.items())
        )
        print(f"PostgreSQL connections open at the end of the mixed phase: {connections}")
        for name, example in {**stats.error_examples, **ingest_stats.error_examples}.items():
            print(f"  first error of {name}: {example}")
        rate = stored / ingest_elapsed if ingest_elapsed else 0.0
        page_p95 = max((mixed[p]["p95_ms"] for p in PAGES if p in mixed), default=0.0)
        print(f"\ningest phase: {args.ingest_clients} clients × 1,000-trace batches: "
              f"{stored:,} traces in {ingest_elapsed:.1f} s = {rate:,.0f} traces/s")  # fmt: skip
        print(
            "CPU ms per 1,000 traces ingested: "
            + ", ".join(f"{k} {v}" for k, v in cpu_ingest.items())
        )
        print(f"goals: 0 errors ({errors}), page p95 < {PAGE_GOAL_MS:.0f} ms ({page_p95}), "
              f"ingest ≥ {INGEST_GOAL:,.0f} traces/s ({rate:,.0f})")  # fmt: skip
        print(f"reproduce: {command}")
        result.update(
            server=args.server,
            users=args.users,
            think_s=args.think,
            traces=n_traces,
            req_per_s=round(total / elapsed, 1),
            errors=errors,
            page_p95_ms=page_p95,
            cpu_ms_per_request=cpu_per_request,
            cpu_ms_per_1000_traces=cpu_ingest,
            pg_connections=connections,
            load_average=os.getloadavg(),
            ingest_traces_per_s=round(rate),
            endpoints={
                k: {m: v[m] for m in ("rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")}
                for k, v in {**mixed, **ingest}.items()
            },  # fmt: skip
            goals_met=errors == 0 and page_p95 < PAGE_GOAL_MS and rate >= INGEST_GOAL,
        )

    set_keys()
    run_on_scratch_database(db_name, body)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
