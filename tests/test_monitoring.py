"""Operations: /metrics (guarded), latency by URL name, task, sandbox, generation and sync
metrics, JSON logs with request and task ids, multi-process metrics, optional Sentry."""

import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY

from evals.execution.runs import run_eval_now
from evals.generation.services import fail_generation
from evals.models import Eval, EvalRun, Generation
from integrations.models import Integration
from tests.traces.factories import EvalSetFactory, TraceFactory

BASE_DIR = Path(settings.BASE_DIR)
DOCS = BASE_DIR / "docs"

pytestmark = pytest.mark.django_db


def _scrape(client, **headers) -> str:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- the endpoint is guarded ------------------------------------------------------------------


def test_metrics_answer_allowed_networks_and_the_token_only(client, settings):
    settings.IOFOLD_METRICS_TOKEN = "scrape-secret"
    outside = {"REMOTE_ADDR": "203.0.113.9"}

    assert client.get("/metrics", **outside).status_code == 403
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", **outside)
    assert wrong.status_code == 403
    assert b"iofold_" not in wrong.content
    _scrape(client, HTTP_AUTHORIZATION="Bearer scrape-secret", **outside)
    _scrape(client)  # the test client is 127.0.0.1, allowed by default


def test_without_a_token_only_the_networks_count(client, settings):
    settings.IOFOLD_METRICS_TOKEN = ""
    assert (
        client.get("/metrics", HTTP_AUTHORIZATION="Bearer ", REMOTE_ADDR="10.0.0.1").status_code
        == 403
    )


# --- requests -------------------------------------------------------------------------------


def test_request_latency_is_labelled_by_url_name_not_path(client, login, member):
    login(member).get("/w/acme/traces/")
    client.get("/no/such/page/")

    text = _scrape(client)

    assert re.search(
        r'iofold_http_request_duration_seconds_count\{method="GET",status="200",'
        r'view="traces:list"\} [1-9]',
        text,
    )
    assert 'view="<unmatched>"' in text
    assert "acme" not in "".join(line for line in text.splitlines() if "view=" in line)


def test_every_response_carries_a_request_id_and_a_proxy_id_is_kept(client):
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/healthz")["X-Request-ID"])
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-42")["X-Request-ID"] == "lb-42"
    # Not a plain id: replaced, so a header cannot inject text into the logs.
    bad = client.get("/healthz", HTTP_X_REQUEST_ID='x" level="ERROR')["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", bad)


@pytest.fixture
def json_logs():
    """The project's JSON formatter and context filter, writing into a buffer."""
    buffer = io.StringIO()
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": settings.LOGGING["filters"],
        "formatters": settings.LOGGING["formatters"],
        "handlers": {
            "buffer": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["context"],
                "stream": buffer,
            }
        },
        "root": {"handlers": ["buffer"], "level": "INFO"},
    }
    logging.config.dictConfig(config)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    logging.config.dictConfig(settings.LOGGING)


def test_json_logs_carry_the_request_id(client, json_logs):
    client.post("/api/v1/integrations/999999/webhook", HTTP_X_REQUEST_ID="req-7")

    record = next(r for r in json_logs() if "webhook rejected" in r["message"])
    assert record["request_id"] == "req-7"
    assert record["level"] == "INFO"
    assert record["logger"] == "integrations.webhooks"
    assert record["task_id"] == ""


def test_tasks_are_timed_by_queue_and_failures_counted(monkeypatch, json_logs):
    from iofold import reaper

    labels = {"task": "iofold.reaper.reap_stale_runs_task", "queue": "default"}
    before = _sample("iofold_celery_task_duration_seconds_count", **labels, outcome="succeeded")
    reaper.reap_stale_runs_task.apply()
    after = _sample("iofold_celery_task_duration_seconds_count", **labels, outcome="succeeded")
    assert after == before + 1

    def broken():
        logging.getLogger("iofold.reaper").warning("sweeping")
        raise RuntimeError("database gone")

    monkeypatch.setattr(reaper, "RECOVER", [broken])
    failures = _sample("iofold_celery_task_failures_total", **labels)
    result = reaper.reap_stale_runs_task.apply(task_id="task-99")
    assert result.failed()
    assert _sample("iofold_celery_task_failures_total", **labels) == failures + 1
    record = next(r for r in json_logs() if r["message"] == "sweeping")
    assert record["task_id"] == "task-99"


LINK_SECRET = "inv-Crash_Token-77aa"  # a one-time link's secret, in an exception's message


def _crashes(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("exc_info")]


def test_a_request_crash_is_one_json_record_with_its_request_id_and_no_link_secret(
    client, json_logs, monkeypatch
):
    from iofold import views

    def crash():
        raise RuntimeError(f"while reading /invitations/{LINK_SECRET}/")

    monkeypatch.setattr(views, "check_database", crash)
    client.raise_request_exception = False

    assert client.get("/healthz", HTTP_X_REQUEST_ID="req-crash").status_code == 500

    [crash] = _crashes(json_logs())
    assert (crash["logger"], crash["request_id"]) == ("django.request", "req-crash")
    assert "RuntimeError: while reading /invitations/[redacted]/" in crash["exc_info"]
    assert LINK_SECRET not in json.dumps(json_logs())


def test_a_task_crash_is_one_json_record_with_its_task_id_and_no_link_secret(
    workspace, json_logs, monkeypatch
):
    """The sync logged its crash with the traceback, then Celery logged the same crash
    again, whose record also held the traceback twice (``exc_info`` and its ``data``)."""
    from integrations import services
    from integrations.tasks import sync_integration_task

    class Crashing:
        def fetch_traces(self, **kwargs):
            raise RuntimeError(f"while reading /invitations/{LINK_SECRET}/")
            yield

    integration = Integration.objects.create(workspace=workspace, name="Langfuse", kind="langfuse")
    monkeypatch.setattr(services, "get_adapter", lambda integration: Crashing())
    run = services.start_sync(integration=integration)

    assert sync_integration_task.apply(args=(run.pk,), task_id="task-crash").failed()

    [crash] = _crashes(json_logs())
    assert (crash["logger"], crash["task_id"]) == ("celery.app.trace", "task-crash")
    # The sync's ids are in the traceback, as a note on the exception.
    assert f"sync crashed run={run.pk} integration={integration.pk}" in crash["exc_info"]
    assert crash["exc_info"].count("Traceback (most recent call last)") == 1
    assert "traceback" not in crash["data"]
    assert "/invitations/[redacted]/" in crash["data"]["exc"]
    assert LINK_SECRET not in json.dumps(json_logs())


def test_log_records_go_to_stderr_and_stdout_keeps_a_commands_output(tmp_path):
    """Every process logs on stderr (docs/operations.md, "Logs"): ``export_workspace acme -``
    writes its archive to stdout, which a log line (a key-rotation warning, say) written
    there would corrupt."""
    code = (
        "import django, logging; django.setup(); "
        "logging.getLogger('iofold').warning('a warning mid-export'); print('archive bytes')"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IOFOLD_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "iofold.settings",
        "LOG_FORMAT": "json",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=BASE_DIR, capture_output=True, text=True
    )

    assert out.returncode == 0, out.stderr
    assert out.stdout == "archive bytes\n"
    assert json.loads(out.stderr)["message"] == "a warning mid-export"


# --- sandbox, generation, cost ----------------------------------------------------------------


def test_sandbox_batches_and_verdicts_are_counted(workspace):
    eval_set = EvalSetFactory(workspace=workspace)
    code = (
        "def eval_fn(trace):\n"
        "    if trace['id'] == 'boom':\n"
        "        raise ValueError('no')\n"
        "    return trace['id'] == 'good', 'checked'\n"
    )
    eval = Eval.objects.create(workspace=workspace, eval_set=eval_set, version=1, code=code)
    traces = [
        TraceFactory(workspace=workspace, data={**TraceFactory.build().data, "id": name})
        for name in ("good", "bad", "boom")
    ]
    before = {
        o: _sample("iofold_sandbox_traces_total", outcome=o) for o in ("passed", "failed", "error")
    }
    runs = _sample("iofold_sandbox_runs_total", outcome="ran")

    run_eval_now(eval=eval, traces=traces)

    assert _sample("iofold_sandbox_runs_total", outcome="ran") == runs + 1
    for outcome in ("passed", "failed", "error"):
        assert _sample("iofold_sandbox_traces_total", outcome=outcome) == before[outcome] + 1


def test_generation_outcomes_and_llm_cost_are_counted(workspace):
    from evals.generation.services import _count_generation

    eval_set = EvalSetFactory(workspace=workspace)
    queued = Generation.objects.create(workspace=workspace, eval_set=eval_set, provider="openai")
    failed = _sample("iofold_generations_total", provider="openai", outcome="failed")
    fail_generation(generation_id=queued.pk, error="provider said no")
    fail_generation(generation_id=queued.pk, error="again: already failed, not counted")
    assert _sample("iofold_generations_total", provider="openai", outcome="failed") == failed + 1

    eval = Eval(provider="openai", model="gpt-x", cost_usd="0.25", input_tokens=1000)
    cost = _sample("iofold_llm_cost_dollars_total", provider="openai", model="gpt-x")
    _count_generation(queued, "succeeded", eval=eval)
    assert _sample("iofold_llm_cost_dollars_total", provider="openai", model="gpt-x") == cost + 0.25
    tokens = dict(provider="openai", model="gpt-x", direction="input")
    assert _sample("iofold_llm_tokens_total", **tokens) >= 1000


# --- gauges read at scrape time ---------------------------------------------------------------


def test_sync_lag_failing_sources_and_the_backlog_are_scraped(client, workspace):
    integration = Integration.objects.create(
        workspace=workspace,
        name="lf",
        host="http://127.0.0.1:9",
        public_key="pk",
        secret_key="s",
        status=Integration.Status.ERROR,
        score_push_failures=3,
        last_synced_at=timezone.now() - timedelta(minutes=10),
    )
    eval_set = EvalSetFactory(workspace=workspace)
    eval = Eval.objects.create(workspace=workspace, eval_set=eval_set, version=1, code="x=1")
    EvalRun.objects.create(workspace=workspace, eval=eval, trigger="manual")

    text = _scrape(client)

    labels = f'integration="{integration.pk}",kind="langfuse",mode="pull",workspace="acme"'
    lag = float(re.search(rf"iofold_integration_sync_lag_seconds\{{{labels}\}} (\S+)", text)[1])
    assert 590 < lag < 700
    assert f"iofold_integration_failing{{{labels}}} 1.0" in text
    assert f"iofold_integration_score_push_failures{{{labels}}} 3.0" in text
    assert 'iofold_runs_queued{kind="eval"} 1.0' in text
    assert "iofold_evals_drifting" in text


def test_an_integration_being_deleted_has_no_gauges(client, workspace):
    integration = Integration.objects.create(
        workspace=workspace,
        name="leaving",
        host="http://127.0.0.1:9",
        public_key="pk",
        secret_key="s",
        status=Integration.Status.ERROR,
        deletion_requested_at=timezone.now(),
    )

    text = _scrape(client)

    # Its syncs stopped with the request: a growing lag or a failing flag would page
    # someone about a source the user already removed.
    assert f'integration="{integration.pk}"' not in text


# --- several processes, one scrape -------------------------------------------------------------


RECORD = (
    "from iofold.lib import metrics;"
    "metrics.HTTP_REQUEST_SECONDS.labels('traces:list', 'GET', '200').observe(0.1)"
)
RENDER = "from iofold.lib import metrics; print(metrics.render()[0].decode())"


def test_metrics_of_several_processes_are_added_up(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two gunicorn workers, each answering one request
        subprocess.run([sys.executable, "-c", RECORD], env=env, cwd=BASE_DIR, check=True)
    out = subprocess.run(
        [sys.executable, "-c", RENDER],
        env=env,
        cwd=BASE_DIR,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert re.search(
        r'iofold_http_request_duration_seconds_count\{method="GET",status="200",'
        r'view="traces:list"\} 2\.0',
        out,
    )


# --- Sentry ------------------------------------------------------------------------------------

SENTRY_ACTIVE = (
    "import django; django.setup(); import sentry_sdk; print(sentry_sdk.get_client().is_active())"
)


def _django_with_sentry(tmp_path, dsn: str, code: str, *args: str):
    """Run ``code`` in a fresh process whose settings have ``SENTRY_DSN=dsn``."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IOFOLD_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "iofold.settings",
        "SENTRY_DSN": dsn,
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("dsn", "active"), [("", "False"), ("http://k@127.0.0.1:9/1", "True")])
def test_sentry_starts_only_with_a_dsn(tmp_path, dsn, active):
    out = _django_with_sentry(tmp_path, dsn, SENTRY_ACTIVE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == active


SCRUB = """
import json, sys, django
django.setup()
import sentry_sdk
fields = sys.argv[1:]
event = {"request": {"data": {"nested": {f: "SECRET-" + f for f in fields}, **{
    f: "SECRET-" + f for f in fields}}}}
print(json.dumps(sentry_sdk.get_client().options["event_scrubber"].scrub_event(event) or event,
                 default=str))
"""


def _secret_form_fields() -> set[str]:
    """Names of every form field the project types secrets into (a password input)."""
    from django import forms

    import evals.forms
    import integrations.forms

    names = set()
    for module in (integrations.forms, evals.forms):
        for form in vars(module).values():
            if isinstance(form, type) and issubclass(form, forms.BaseForm):
                names |= {
                    name
                    for name, field in form.base_fields.items()
                    if isinstance(field.widget, forms.PasswordInput)
                }
    return names


def test_error_reports_carry_no_secret_typed_into_a_form_or_the_api(tmp_path):
    fields = sorted(_secret_form_fields() | {"secret_key", "webhook_secret"})
    assert "secret_key" in fields and "api_key" in fields
    out = _django_with_sentry(tmp_path, "http://k@127.0.0.1:9/1", SCRUB, *fields)
    assert out.returncode == 0, out.stderr
    assert "SECRET-" not in out.stdout


# --- the dashboard and the alerts name metrics that exist ----------------------------------------


def _metric_names(text: str) -> set[str]:
    return set(re.findall(r"\b(iofold_[a-z_]+?)(?:_bucket|_count|_sum|_total)?\b", text))


def test_dashboard_and_alert_rules_use_only_metrics_iofold_exports(client):
    types = [line for line in _scrape(client).splitlines() if line.startswith("# TYPE iofold_")]
    exported = _metric_names("\n".join(line.split()[2] for line in types))
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    alerts = (DOCS / "prometheus-alerts.yml").read_text()
    used = _metric_names(queries) | _metric_names(alerts)
    assert len(used) >= 8
    assert sorted(used - exported) == []
    for name in (
        "IofoldSyncFailing",
        "IofoldWorkerQueueBackedUp",
        "IofoldScorePushFailing",
        "IofoldEvalDrift",
    ):
        assert f"alert: {name}" in alerts
    assert (DOCS / "prometheus-alerts.yml").read_text() in (DOCS / "operations.md").read_text()


# --- the web server's own log lines ------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_web_servers_log_is_json_lines_without_one_time_links(tmp_path):
    """gunicorn as the image runs it (DEBUG=false): its own lines and the access log are JSON
    like the app's, the access line carries the request id, and the secret part of an
    invitation, password-reset or email-confirmation link is not written down."""
    import json
    import time
    import urllib.error
    import urllib.request

    from cryptography.fernet import Fernet

    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IOFOLD_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "iofold.settings",
        "DEBUG": "false",
        "SECRET_KEY": "s" * 60,
        "IOFOLD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "STATIC_ROOT": str(tmp_path / "static"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    for command in (["migrate"], ["collectstatic", "--noinput"]):
        subprocess.run(
            [sys.executable, "manage.py", *command, "-v0"], env=env, cwd=BASE_DIR, check=True
        )
    log = tmp_path / "web.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "iofold.wsgi:application",
                "--config",
                "python:iofold.gunicorn_conf",
            ],  # fmt: skip
            env=env,
            cwd=BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    secrets_sent = ["INVITE0secret0token0abcdefghijkl", "CONFIRM0key0abc:1xZo3E:def", "1-RESET0key"]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        ids = []
        for path in (
            f"/invitations/{secrets_sent[0]}/",
            f"/accounts/confirm-email/{secrets_sent[1]}/",
            f"/accounts/password/reset/key/{secrets_sent[2]}/",
        ):
            try:
                response = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
            except urllib.error.HTTPError as exc:
                response = exc
            ids.append(response.headers["X-Request-ID"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    for secret in secrets_sent:
        assert secret.split(":")[0] not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # each one JSON
    assert {"time", "level", "logger", "message", "request_id"} <= lines[0].keys()
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert len(access) == 4
    assert [line["request_id"] for line in access[1:]] == ids
    assert "/invitations/" in access[1]["message"]
    # Django's warning about the 404, written after the middleware, has its request's id too.
    (not_found,) = [line for line in lines if line["logger"] == "django.request"]
    assert not_found["request_id"] == ids[0]


def test_a_malformed_log_call_still_does_not_raise_into_the_caller(caplog):
    from iofold.lib.logcontext import ContextFilter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert ContextFilter().filter(record) is True


def test_a_beat_crash_is_one_json_record_with_its_traceback(tmp_path):
    """Celery beat as compose runs it (quiet, JSON logs) on a database not migrated yet:
    every line it writes is one JSON object, and the crash's traceback is whole in one
    record, not one record per piece Celery's stderr proxy received."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "IOFOLD_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "iofold.settings",
        "LOG_FORMAT": "json",
    }
    beat = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "iofold", "--quiet", "beat", "--loglevel=INFO"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert beat.returncode != 0
    lines = [line for line in (beat.stdout + beat.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # each line parses whole
    assert all(isinstance(record, dict) for record in records)
    assert len(records) < 10, lines
    crash = [r for r in records if r["logger"] == "iofold"]
    assert len(crash) == 1, lines
    traceback = crash[0]["exc_info"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.rstrip().endswith("no such table: django_celery_beat_crontabschedule")
