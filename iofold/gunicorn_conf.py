"""Gunicorn's configuration for the web tier (the Dockerfile's server command loads it).

gthread workers: Django's views and ORM are synchronous, so an ASGI server would only run
them in a thread pool behind an event loop; bench/load.py measured both on the same
machine (figures in docs/operations.md) and gthread answered with the lower p95.

Workers come from the CPUs this process may use (a container's CPU set, not the host's),
two per CPU plus one, so a worker waiting on PostgreSQL leaves the CPU to another; each
runs a few threads for requests waiting on I/O. ``WEB_CONCURRENCY`` overrides the number of
workers and ``WEB_THREADS`` the threads per worker. Every thread may hold one database
connection: keep workers × threads (× web containers) under PostgreSQL's max_connections.
"""

import os


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = _env_int("WEB_CONCURRENCY", 2 * _cpus() + 1)
threads = _env_int("WEB_THREADS", 4)
# A request that takes longer is cut off; long work goes to Celery (202 and a run to poll).
timeout = _env_int("WEB_TIMEOUT", 60)
graceful_timeout = 30
# Kept-alive connections stay with the worker that accepted them, even while its threads
# are busy. Tried and not kept: a worker accepting only while a thread is free, without
# keep-alive (worker_connections = threads), so waiting requests share the listening
# socket. gthread then closes every connection on the worker's event loop, waiting there
# for the client to close its side, and bench/load.py measured more web CPU per request,
# fewer requests per second and a higher page p50 (README, "How far one machine goes").
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound; jitter keeps them
# from restarting together.
max_requests = 5000
max_requests_jitter = 500
# Load the app once in the master: workers fork with it imported (faster start, shared pages).
preload_app = True
accesslog = "-"  # on; not stdout: see below
# Gunicorn's own lines and the access log go to the root logger, which the settings'
# LOGGING formats (JSON in production, with the request id, one-time link secrets taken
# out) and writes to stderr, as every process does; the app is preloaded, so that is
# configured before gunicorn writes its first line.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'
logconfig_dict = {
    "root": {"level": "INFO", "handlers": []},
    "loggers": {
        name: {"level": "INFO", "handlers": [], "propagate": True}
        for name in ("gunicorn.error", "gunicorn.access")
    },
}
# The proxy in front sets X-Forwarded-*; the container is only reachable through it.
forwarded_allow_ips = "*"
# The control socket would go in the home directory, which the app user cannot write.
control_socket_disable = True


def when_ready(server):
    """Import the Celery tasks modules once in the master, before the workers fork.

    The app is preloaded, so the workers inherit them; otherwise each worker's first
    enqueue would import them (and the vendor SDKs they pull in) inside a request.
    """
    from celery import current_app

    current_app.loader.import_default_modules()
