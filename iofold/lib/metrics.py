"""Prometheus metrics recorded in process, and their exposition.

The metrics here are counters and histograms, recorded where things happen (the request
middleware, Celery's task signals, the sandbox, generation, score delivery). Gauges read
from the database (sync lag, queue lengths, drift) are computed when /metrics is scraped
(``iofold.monitoring``), so no process has to keep them current.

Gunicorn and Celery's prefork pool run several processes: with ``PROMETHEUS_MULTIPROC_DIR``
set, prometheus_client keeps every process's values in files there and ``render`` adds
them up, so a scrape sees all workers whichever one answers. The folder must be empty when
the server starts (the values of a previous run would be counted again); counters of a
worker that died stay in it, as a counter must never go down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from iofold.lib import logcontext

# No *_created series: dashboards do not use them, and they double the exposition.
disable_created_metrics()

# Request latency from 5 ms to 10 s: pages aim at < 500 ms p95, the matrix at < 200 ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10)
# Tasks run from milliseconds (a score push) to half an hour (a backfill run).
TASK_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800)

HTTP_REQUEST_SECONDS = Histogram(
    "iofold_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL name (not path), method and status.",
    ["view", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
TASK_SECONDS = Histogram(
    "iofold_celery_task_duration_seconds",
    "Time a Celery task ran, by task, queue and outcome (succeeded, failed, retried).",
    ["task", "queue", "outcome"],
    buckets=TASK_BUCKETS,
)
TASK_FAILURES = Counter(
    "iofold_celery_task_failures",
    "Celery tasks that raised, by task and queue.",
    ["task", "queue"],
)
SANDBOX_RUNS = Counter(
    "iofold_sandbox_runs",
    "Batches handed to the sandbox, by outcome: ran, or unavailable (it could not run).",
    ["outcome"],
)
SANDBOX_TRACES = Counter(
    "iofold_sandbox_traces",
    "Traces judged in the sandbox, by verdict: passed, failed, or error (the eval raised, "
    "timed out or was killed).",
    ["outcome"],
)
SANDBOX_SECONDS = Histogram(
    "iofold_sandbox_run_duration_seconds",
    "Time one batch spent in the sandbox.",
    buckets=TASK_BUCKETS,
)
GENERATIONS = Counter(
    "iofold_generations",
    "Finished eval generations, by provider and outcome (succeeded, failed).",
    ["provider", "outcome"],
)
LLM_COST = Counter(
    "iofold_llm_cost_dollars",
    "Dollars spent on LLM calls for generation, as priced by IOFOLD_LLM_PRICES.",
    ["provider", "model"],
)
LLM_TOKENS = Counter(
    "iofold_llm_tokens",
    "Tokens sent to and received from LLMs for generation.",
    ["provider", "model", "direction"],
)
SCORE_PUSHES = Counter(
    "iofold_score_pushes",
    "Verdicts sent back to sources (Langfuse scores, LangSmith feedback), by outcome.",
    ["kind", "outcome"],
)


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def scrape_registry(extra: Iterable = ()) -> CollectorRegistry:
    """A registry of every process's metrics (or this one's) plus ``extra`` collectors."""
    registry = CollectorRegistry(auto_describe=True)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in extra:
        registry.register(collector)
    return registry


def render(extra: Iterable = ()) -> tuple[bytes, str]:
    """Return the exposition of every process's metrics plus ``extra`` collectors."""
    return generate_latest(scrape_registry(extra)), CONTENT_TYPE_LATEST


class _ThisProcess:
    """The default registry's metrics (this process's), inside a per-scrape registry."""

    def collect(self):
        return REGISTRY.collect()


class Stopwatch:
    """``with Stopwatch() as watch: ...; watch.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def observe_sandbox(results, *, seconds: float) -> None:
    """Count one sandbox batch and its verdicts (``sandbox.Result`` objects)."""
    SANDBOX_RUNS.labels("ran").inc()
    SANDBOX_SECONDS.observe(seconds)
    counts = {"passed": 0, "failed": 0, "error": 0}
    for result in results:
        if result.error is not None:
            counts["error"] += 1
        else:
            counts["passed" if result.passed else "failed"] += 1
    for outcome, count in counts.items():
        if count:
            SANDBOX_TRACES.labels(outcome).inc(count)


# --- Celery tasks ----------------------------------------------------------------------------

_task_started: dict[str, tuple[float, object]] = {}


def _queue_of(task) -> str:
    delivery = getattr(task.request, "delivery_info", None) or {}
    queue = delivery.get("routing_key") or delivery.get("queue")
    if queue:
        return str(queue)
    # Run eagerly or without delivery info: the queue its route sends it to.
    route = task.app.amqp.router.route({}, task.name)
    queue = route.get("queue")
    return getattr(queue, "name", None) or str(queue or task.app.conf.task_default_queue)


def task_prerun(task_id=None, task=None, **kwargs) -> None:
    _task_started[task_id] = (time.perf_counter(), logcontext.task_id.set(task_id or ""))


def task_postrun(task_id=None, task=None, state=None, **kwargs) -> None:
    started = _task_started.pop(task_id, None)
    if started is None or task is None:
        return
    start, token = started
    outcome = {"SUCCESS": "succeeded", "RETRY": "retried"}.get(state or "", "failed")
    queue = _queue_of(task)
    TASK_SECONDS.labels(task.name, queue, outcome).observe(time.perf_counter() - start)
    if outcome == "failed":
        TASK_FAILURES.labels(task.name, queue).inc()
    try:
        logcontext.task_id.reset(token)
    except ValueError:  # reset from another context (a thread pool): just clear it
        logcontext.task_id.set("")


def connect_task_signals() -> None:
    """Time every task by name and queue, count failures, and set the task id for logs."""
    from celery.signals import task_postrun as postrun
    from celery.signals import task_prerun as prerun

    prerun.connect(task_prerun, weak=False, dispatch_uid="iofold-metrics-prerun")
    postrun.connect(task_postrun, weak=False, dispatch_uid="iofold-metrics-postrun")
