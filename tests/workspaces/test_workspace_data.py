"""A workspace's data leaves and comes back whole: export, erase after a grace period, import.

Serves data export and erasure requests; secrets never leave in an archive.
"""

import gzip
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from evals.models import Eval, EvalExecution, EvalRun, Generation, ProviderSettings
from integrations import services as integration_services
from integrations import webhooks
from integrations.models import Integration, SyncRun
from iofold import workspace_data
from tests.traces.factories import TraceFactory
from traces.models import EvalSet, EvalSetTrace, Feedback, Trace
from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback
from workspaces import services as workspace_services
from workspaces.models import Membership, Workspace
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db

SECRETS = ("sk-lf-very-secret-1234", "sk-openai-provider-key-5678")


@pytest.fixture
def full_workspace(workspace, owner, member):
    """A workspace with a bit of everything, and secrets in every place they can be."""
    integration = integration_services.create_integration(
        workspace=workspace,
        name="lf",
        host="http://127.0.0.1:9",
        public_key="pk-lf",
        secret_key=SECRETS[0],
    )
    webhook_secret = webhooks.regenerate_webhook_secret(integration=integration)
    SyncRun.objects.create(workspace=workspace, integration=integration, status="succeeded")
    ProviderSettings.objects.create(workspace=workspace, provider="openai", api_key=SECRETS[1])
    token = issue_token(workspace=workspace, name="ci", created_by=owner, role="member")[1]
    traces = [TraceFactory(workspace=workspace, integration=integration) for _ in range(4)]
    eval_set = create_eval_set(workspace=workspace, name="Refunds", criteria="answers")
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    for trace, rating in zip(traces, ["positive", "negative", "positive", "neutral"], strict=True):
        record_feedback(eval_set=eval_set, trace=trace, user=member, rating=rating, note="why")
    v1 = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="def eval_fn(t):\n  return True, ''\n",
        provider="openai",
        model="gpt-x",
        cost_usd="0.012",
        metrics={"accuracy": 0.5},
    )
    v2 = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=2,
        code="def eval_fn(t):\n  return False, ''\n",
        parent=v1,
        status="active",
        activated_at=timezone.now(),
    )
    Generation.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        parent=v1,
        result=v2,
        provider="openai",
        status="succeeded",
    )
    run = EvalRun.objects.create(
        workspace=workspace, eval=v2, trigger="manual", status="succeeded", total=2, done=2
    )
    unfinished = EvalRun.objects.create(workspace=workspace, eval=v1, trigger="manual")
    for trace, passed in zip(traces[:2], [True, False], strict=True):
        EvalExecution.objects.create(
            workspace=workspace, eval=v2, run=run, trace=trace, passed=passed, reason="r"
        )
    return {"token": token, "webhook_secret": webhook_secret, "unfinished": unfinished}


def _snapshot(workspace) -> dict:
    """Everything users see in the workspace, by natural keys instead of ids."""
    ws = workspace
    trace_key = dict(Trace.objects.for_workspace(ws).values_list("pk", "external_id"))
    evals = {e.pk: (e.eval_set.name, e.version) for e in Eval.objects.for_workspace(ws)}
    return {
        "members": sorted(Membership.objects.for_workspace(ws).values_list("user__email", "role")),
        "integrations": sorted(
            Integration.objects.for_workspace(ws).values_list("name", "kind", "host", "public_key")
        ),
        "sync runs": SyncRun.objects.for_workspace(ws).count(),
        "traces": sorted(
            (t.external_id, json.dumps(t.data, sort_keys=True), t.timestamp, t.content_hash)
            for t in Trace.objects.for_workspace(ws)
        ),
        "eval sets": sorted(EvalSet.objects.for_workspace(ws).values_list("name", "criteria")),
        "eval set traces": sorted(
            (m.eval_set.name, trace_key[m.trace_id]) for m in EvalSetTrace.objects.for_workspace(ws)
        ),
        "labels": sorted(
            (f.eval_set.name, trace_key[f.trace_id], f.user.email, f.rating, f.note, f.created_at)
            for f in Feedback.objects.for_workspace(ws)
        ),
        "versions": sorted(
            (
                evals[e.pk],
                e.code,
                e.status,
                e.activated_at,
                evals.get(e.parent_id),
                str(e.cost_usd),
                json.dumps(e.metrics, sort_keys=True),
                e.created_at,
            )
            for e in Eval.objects.for_workspace(ws)
        ),
        "generations": sorted(
            (g.eval_set.name, evals.get(g.parent_id), evals.get(g.result_id), g.status)
            for g in Generation.objects.for_workspace(ws)
        ),
        "runs": sorted(
            (evals[r.eval_id], r.trigger, r.status, r.total, r.done)
            for r in EvalRun.objects.for_workspace(ws)
        ),
        "executions": sorted(
            (evals[x.eval_id], trace_key[x.trace_id], x.passed, x.reason, x.run.trigger)
            for x in EvalExecution.objects.for_workspace(ws)
        ),
        "provider": list(ProviderSettings.objects.for_workspace(ws).values_list("provider")),
    }


def _export(workspace) -> bytes:
    out = io.BytesIO()
    workspace_data.export_workspace(workspace=workspace, out=out)
    return out.getvalue()


def test_export_delete_import_gives_back_the_same_workspace(
    full_workspace, workspace, django_capture_on_commit_callbacks, monkeypatch, tmp_path
):
    from workspaces import tasks

    before = _snapshot(workspace)
    archive = tmp_path / "acme.jsonl.gz"
    call_command("export_workspace", "acme", str(archive))

    # Erasure: scheduled, due, carried out by the periodic task and the deletion task.
    call_command("delete_workspace", "acme", "--grace-days", "0")
    monkeypatch.setattr(tasks.delete_workspace_task, "delay", tasks.delete_workspace_task)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.delete_due_workspaces_task() == 1
    assert not Workspace.objects.filter(slug="acme").exists()
    assert not Trace.objects.filter(workspace_id=workspace.pk).exists()

    out = io.StringIO()
    call_command("import_workspace", str(archive), stdout=out)

    restored = Workspace.objects.get(slug="acme")
    assert restored.pk != workspace.pk
    after = _snapshot(restored)
    # The run that was unfinished when exported comes back failed, not queued for ever.
    expected_runs = [
        (*run[:2], "failed", *run[3:]) if run[2] == "queued" else run for run in before["runs"]
    ]
    assert after == {**before, "runs": sorted(expected_runs)}
    assert "traces.trace 4" in out.getvalue()
    # It says which secrets to enter again, and where.
    told = out.getvalue().split("to enter again:", 1)[1]
    assert "integration “lf”: secret key, webhook secret (disabled until then)" in told
    assert "provider settings “OpenAI-compatible for Acme”: api key" in told
    assert "API tokens and invitations are not exported" in told
    # The keys did not travel: the integration waits, disabled, for them to be entered again.
    integration = Integration.objects.for_workspace(restored).get()
    assert (integration.secret_key, integration.webhook_secret, integration.enabled) == (
        "",
        "",
        False,
    )
    assert ProviderSettings.objects.for_workspace(restored).get().api_key == ""


def test_the_archive_holds_no_secret(full_workspace, workspace):
    text = gzip.decompress(_export(workspace)).decode()
    manifest = json.loads(text.splitlines()[0])
    assert (manifest["format"], manifest["version"]) == ("iofold-workspace", 1)
    for secret in (*SECRETS, full_workspace["token"], full_workspace["webhook_secret"]):
        assert secret not in text
    models = {json.loads(line)["model"] for line in text.splitlines()[1:]}
    assert "workspaces.apitoken" not in models and "workspaces.invitation" not in models
    assert "password" not in text


def test_an_imported_workspace_counts_its_verdicts_per_day(full_workspace, workspace, tmp_path):
    """The dashboard's per-day counts are not in the archive: the import's verdicts make
    them, on the days they were first written."""
    from evals.models import VerdictDay

    EvalExecution.objects.for_workspace(workspace).update(
        created_at=timezone.now() - timedelta(days=3)
    )
    archive = tmp_path / "a.gz"
    archive.write_bytes(_export(workspace))
    call_command("import_workspace", str(archive), "--slug", "acme-copy", stdout=io.StringIO())

    copy = VerdictDay.objects.for_workspace(Workspace.objects.get(slug="acme-copy"))
    day = timezone.localdate() - timedelta(days=3)
    assert [(d.eval.version, d.day, d.passed, d.failed) for d in copy] == [(2, day, 1, 1)]


def test_another_workspace_is_not_exported(full_workspace, workspace, other_workspace):
    TraceFactory(workspace=other_workspace, external_id="globex-only")
    assert b"globex-only" not in gzip.decompress(_export(workspace))


def test_import_refuses_a_taken_slug_and_a_foreign_file(full_workspace, workspace, tmp_path):
    archive = tmp_path / "a.gz"
    archive.write_bytes(_export(workspace))
    with pytest.raises(CommandError, match="slug “acme” exists"):
        call_command("import_workspace", str(archive))
    copy = io.StringIO()
    call_command("import_workspace", str(archive), "--slug", "acme-copy", stdout=copy)
    assert Trace.objects.for_workspace(Workspace.objects.get(slug="acme-copy")).count() == 4

    other = tmp_path / "other.gz"
    other.write_bytes(gzip.compress(b'{"format": "something-else"}\n'))
    with pytest.raises(CommandError, match="Not an iofold workspace archive"):
        call_command("import_workspace", str(other), "--slug", "x")
    newer = tmp_path / "newer.gz"
    newer.write_bytes(gzip.compress(b'{"format": "iofold-workspace", "version": 99}\n'))
    with pytest.raises(CommandError, match="version 99 is not supported"):
        call_command("import_workspace", str(newer), "--slug", "y")
    broken = tmp_path / "broken.gz"
    broken.write_bytes(_export(workspace)[:-40])
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("import_workspace", str(broken), "--slug", "z")
    # Nothing half-written by the failed imports.
    assert not Workspace.objects.filter(slug__in=["x", "y", "z"]).exists()


def test_a_scheduled_deletion_waits_for_its_grace_period_and_can_be_cancelled(workspace, owner):
    call_command("delete_workspace", "acme", "--grace-days", "30", stdout=io.StringIO())
    workspace.refresh_from_db()
    assert workspace.deletion_scheduled_for > timezone.now() + timedelta(days=29)
    assert workspace_services.request_due_deletions() == 0
    assert Workspace.objects.for_user(owner).exists()

    call_command("delete_workspace", "acme", "--cancel", stdout=io.StringIO())
    workspace.refresh_from_db()
    assert workspace.deletion_scheduled_for is None

    with pytest.raises(CommandError, match="No workspace"):
        call_command("delete_workspace", "nope")


def test_the_due_deletions_task_is_scheduled():
    from django.conf import settings

    tasks = {task for task, _ in settings.IOFOLD_PERIODIC_TASKS.values()}
    assert "workspaces.tasks.delete_due_workspaces_task" in tasks


def _content(archive: bytes) -> dict[str, list[str]]:
    """Each model's rows without ids or links (they differ between installations), sorted."""
    from django.apps import apps

    rows: dict[str, list[str]] = {}
    for line in gzip.decompress(archive).decode().splitlines()[1:]:
        obj = json.loads(line)
        model = apps.get_model(obj["model"])
        relations = {f.name for f in model._meta.concrete_fields if f.is_relation}
        fields = {k: v for k, v in obj["fields"].items() if k not in relations}
        rows.setdefault(obj["model"], []).append(json.dumps(fields, sort_keys=True))
    return {model: sorted(items) for model, items in rows.items()}


@pytest.mark.django_db(transaction=True)
def test_an_archive_imports_into_a_fresh_installation(full_workspace, workspace, tmp_path):
    import os
    import subprocess
    import sys

    from django.conf import settings

    archive = tmp_path / "acme.jsonl.gz"
    archive.write_bytes(_export(workspace))
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "IOFOLD_VAR_DIR": str(tmp_path / "var"),
    }

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr.decode()
        return result.stdout

    manage("migrate", "-v0")
    manage("import_workspace", str(archive))
    again = manage("export_workspace", "acme", "-")

    original, restored = _content(archive.read_bytes()), _content(again)
    # Only what arriving changes: the unfinished run is failed, the syncing source waits
    # for its key, disabled.
    assert original.pop("evals.evalrun") != restored.pop("evals.evalrun")
    [integration] = restored.pop("integrations.integration")
    assert json.loads(integration)["enabled"] is False
    original.pop("integrations.integration")
    assert restored == original


def test_every_model_a_workspace_owns_is_exported_or_left_out_on_purpose():
    from django.apps import apps

    from workspaces.models import ApiToken, Invitation, WorkspaceOwned

    owned = {m for m in apps.get_models() if issubclass(m, WorkspaceOwned)}
    credentials = {ApiToken, Invitation}
    left_out = credentials | workspace_data.NOT_EXPORTED
    assert owned - left_out == set(workspace_data.MODELS) - {Workspace}


def test_conversations_come_back_with_their_turns(workspace, tmp_path):
    from iofold.pipeline import ingest_traces
    from tests.traces.factories import trace_data
    from traces.models import Conversation

    turns = []
    for n in (1, 2):
        data = trace_data(n)
        data.update(id=f"turn-{n}", session_id="chat-7", timestamp=f"2026-11-30T12:0{n}:00+00:00")
        turns.append(data)
    ingest_traces(workspace=workspace, source="upload", traces=turns, integration=None)
    archive = tmp_path / "a.gz"
    archive.write_bytes(_export(workspace))

    call_command("import_workspace", str(archive), "--slug", "acme-copy", stdout=io.StringIO())

    copy = Workspace.objects.get(slug="acme-copy")
    conversation = Conversation.objects.for_workspace(copy).get()
    assert conversation.external_id == "chat-7" and conversation.turn_count == 2
    assert sorted(conversation.turns.values_list("external_id", flat=True)) == ["turn-1", "turn-2"]
    assert conversation.anchor.workspace_id == copy.pk


def _rewrite(archive: bytes, change) -> bytes:
    """The archive with ``change(lines)`` applied to its decoded lines (manifest first)."""
    lines = [json.loads(line) for line in gzip.decompress(archive).decode().splitlines()]
    return gzip.compress("".join(json.dumps(x) + "\n" for x in change(lines)).encode())


def _first(model, change):
    """A ``_rewrite`` change that applies ``change(row)`` to the first row of ``model``."""

    def apply(lines):
        row = next(x for x in lines[1:] if x["model"] == model)
        change(row)
        return lines

    return apply


HOSTILE = {
    "a date that is a list": (
        _first("traces.trace", lambda r: r["fields"].update(timestamp=[1, 2])),
        "traces.trace .*timestamp|fromisoformat",
    ),
    "a number that is text": (
        _first("evals.eval", lambda r: r["fields"].update(version="abc")),
        "evals.eval .*must be an integer",
    ),
    "a field unknown here": (
        _first("evals.eval", lambda r: r["fields"].update(bogus=1)),
        r"evals.eval .* unknown here: \['bogus'\]",
    ),
    "an id chosen by the archive": (
        _first("evals.eval", lambda r: r["fields"].update(id=99999)),
        r"unknown here: \['id'\]",
    ),
    "a name of 100,000 characters": (
        _first("traces.evalset", lambda r: r["fields"].update(name="x" * 100_000)),
        "traces.evalset .*name: Ensure this value has at most 200 characters",
    ),
    "a user that is not an email": (
        _first("accounts.user", lambda r: r["fields"].update(email={"a": 1})),
        "names a user by .*not an email",
    ),
    "an email of 1,000 characters": (
        _first("accounts.user", lambda r: r["fields"].update(email="a" * 1000 + "@x.io")),
        "not an email",
    ),
    "a rating that is no choice": (
        _first("traces.feedback", lambda r: r["fields"].update(rating="awesome")),
        "traces.feedback .*rating: Value 'awesome' is not a valid choice",
    ),
    "a negative count": (
        _first("evals.evalrun", lambda r: r["fields"].update(total=-5)),
        "evals.evalrun .*total: Ensure this value is greater than or equal to 0",
    ),
    "a NUL character": (
        _first("traces.evalset", lambda r: r["fields"].update(name="a\x00b")),
        "NUL character",
    ),
    "a missing workspace": (
        _first("traces.evalset", lambda r: r["fields"].update(workspace=None)),
        "break a rule of this database .*workspace",
    ),
    "another workspace's id": (
        _first("traces.evalset", lambda r: r["fields"].update(workspace=123456)),
        "refers to a missing workspace 123456",
    ),
    "a second workspace": (
        lambda lines: lines + [x for x in lines if x.get("model") == "workspaces.workspace"],
        "more than one workspace",
    ),
    "a reverse relation as a field": (
        _first("evals.evalrun", lambda r: r["fields"].update(chunks=1)),
        r"unknown here: \['chunks'\]",
    ),
    "a line that is not a row": (lambda lines: lines + [[1, 2]], "not a row"),
    "a slug that is a path": (
        lambda lines: [{**lines[0], "workspace": {"name": "x", "slug": "../../etc"}}, *lines[1:]],
        "cannot be a workspace's slug",
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_archive_is_refused_with_a_clear_message_and_nothing_written(
    full_workspace, workspace, tmp_path, case
):
    from accounts.models import User

    change, message = HOSTILE[case]
    archive = tmp_path / "a.gz"
    archive.write_bytes(_rewrite(_export(workspace), change))
    workspace.slug = "old-acme"  # the archive's own slug is free: only the file is wrong
    workspace.save(update_fields=["slug"])
    counts = (Workspace.objects.count(), User.objects.count(), Trace.objects.count())
    args = ["--slug", "copy"] if case != "a slug that is a path" else []

    with pytest.raises(CommandError, match=message):
        call_command("import_workspace", str(archive), *args)

    assert (Workspace.objects.count(), User.objects.count(), Trace.objects.count()) == counts


def test_a_slug_that_is_a_path_is_refused(full_workspace, workspace, tmp_path):
    archive = tmp_path / "a.gz"
    archive.write_bytes(_export(workspace))
    with pytest.raises(CommandError, match="“Bad Slug/..” cannot be a workspace's slug"):
        call_command("import_workspace", str(archive), "--slug", "Bad Slug/..")
    assert not Workspace.objects.exclude(pk=workspace.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_export_to_a_pipe_that_closes_early_prints_no_traceback(workspace):
    """``export_workspace acme - | head -c 100`` stops quietly when head has read enough."""
    import os
    import random
    import string
    import subprocess
    import sys

    from django.conf import settings

    from tests.conftest import _database_url_for_worker

    noise = random.Random(7)
    for _ in range(40):  # random text: the archive outgrows the pipe's buffer
        text = "".join(noise.choices(string.ascii_letters, k=8_000))
        TraceFactory(workspace=workspace, data={"input": "", "output": text})
    env = {**os.environ, "DATABASE_URL": _database_url_for_worker()}
    export = subprocess.Popen(
        [sys.executable, "manage.py", "export_workspace", "acme", "-"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    export.stdout.read(100)  # what head -c 100 does: read a little, then close
    export.stdout.close()
    stderr = export.stderr.read()
    export.wait(timeout=300)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()[-2000:]


def test_a_workspace_with_every_kind_of_row_comes_back_whole_under_another_slug(tmp_path):
    """Sources of each kind, conversations and their judgements, comments, activity,
    automatic refinements, automation settings: each model's rows come back as they were."""
    from tests.admin_world import build_workspace
    from tests.factories import WorkspaceFactory

    build_workspace(WorkspaceFactory(slug="acme", name="Acme"), traces=4)
    archive = tmp_path / "a.gz"
    call_command("export_workspace", "acme", str(archive), stderr=io.StringIO())
    call_command("import_workspace", str(archive), "--slug", "acme-copy", stdout=io.StringIO())
    again = io.BytesIO()
    workspace_data.export_workspace(workspace=Workspace.objects.get(slug="acme-copy"), out=again)

    original, restored = _content(archive.read_bytes()), _content(again.getvalue())
    exported = set(original) - {"accounts.user"}
    unused = {m._meta.label_lower for m in workspace_data.MODELS} - exported
    assert unused <= {
        "traces.labelassignment",
        "evals.judgetemplate",
        "evals.evalsetautomation",
        "evals.judgeresponse",
    }
    # Syncing sources wait, disabled, for their keys.
    original["integrations.integration"] = sorted(
        row.replace('"enabled": true', '"enabled": false')
        if '"kind": "l' in row or '"kind": "openai"' in row
        else row
        for row in original["integrations.integration"]
    )
    assert restored.pop("workspaces.workspace") != original.pop("workspaces.workspace")
    assert restored == original


def test_export_to_a_path_that_cannot_be_written_says_so(workspace, tmp_path):
    for path in (tmp_path, tmp_path / "missing" / "a.gz"):  # a folder; a missing folder
        with pytest.raises(CommandError, match="Cannot write"):
            call_command("export_workspace", "acme", str(path), stderr=io.StringIO())


def test_import_from_a_path_that_cannot_be_read_says_so(db, tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*: Is a directory"):
        call_command("import_workspace", str(tmp_path))
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_workspace", str(tmp_path / "missing.gz"))


def test_a_line_longer_than_the_limit_is_refused_before_it_is_read_whole(
    workspace, tmp_path, monkeypatch
):
    """A line is read up to the limit, not whole: a gzip of one endless line cannot fill
    the memory. Nothing is written."""
    from tests.traces.factories import trace_data

    TraceFactory(workspace=workspace, data={**trace_data(1), "output": "x" * 1_500_000})
    archive = tmp_path / "a.gz"
    archive.write_bytes(_export(workspace))
    monkeypatch.setattr(workspace_data, "MAX_LINE_BYTES", 1024 * 1024)
    reads = []
    real_lines = workspace_data._lines

    def counted(archive):
        for line in real_lines(archive):
            reads.append(len(line))
            yield line

    monkeypatch.setattr(workspace_data, "_lines", counted)
    counts = (Workspace.objects.count(), Trace.objects.count())

    with pytest.raises(CommandError, match=r"Line \d+ of the archive is longer than 1 MiB"):
        call_command("import_workspace", str(archive), "--slug", "copy")

    assert max(reads) < 1024 * 1024
    assert (Workspace.objects.count(), Trace.objects.count()) == counts


def test_conversation_links_are_read_back_a_page_of_traces_at_a_time(
    workspace, tmp_path, monkeypatch
):
    """The import links turns to conversations reading a page of payloads at a time: all at
    once held every trace of the workspace in memory."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from iofold.pipeline import ingest_traces
    from tests.traces.factories import trace_data
    from traces.models import Conversation

    turns = []
    for n in range(1, 6):
        data = trace_data(n)
        data.update(id=f"turn-{n}", session_id=f"chat-{n % 2}")
        turns.append(data)
    ingest_traces(workspace=workspace, source="upload", traces=turns, integration=None)
    archive = tmp_path / "a.gz"
    archive.write_bytes(_export(workspace))
    monkeypatch.setattr(workspace_data, "CHUNK", 2)

    with CaptureQueriesContext(connection) as queries:
        call_command("import_workspace", str(archive), "--slug", "acme-copy", stdout=io.StringIO())

    copy = Workspace.objects.get(slug="acme-copy")
    turns_of = {
        c.external_id: sorted(c.turns.values_list("external_id", flat=True))
        for c in Conversation.objects.for_workspace(copy)
    }
    assert turns_of == {"chat-0": ["turn-2", "turn-4"], "chat-1": ["turn-1", "turn-3", "turn-5"]}
    payload_reads = [
        q["sql"] for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and '"traces_trace"."data"' in q["sql"]
    ]  # fmt: skip
    assert payload_reads and all("LIMIT 2" in sql for sql in payload_reads)
