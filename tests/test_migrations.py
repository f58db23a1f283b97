import pytest
from django.core.management import call_command


def test_models_and_migrations_agree(db):
    """A model change without its migration fails here (``makemigrations --check``)."""
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_agents_sdk_traces_stored_before_their_source_join_it(transactional_db):
    """Traces the Agents SDK posted before its source existed are attached to one, so a
    later post of the same trace merges into them instead of storing a second copy."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("traces", "0006_sources_of_every_integration_kind"),
              ("integrations", "0006_openai_agents_source_kind")]  # fmt: skip
    after = [("traces", "0007_agents_sdk_traces_to_their_source")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Workspace = apps.get_model("workspaces", "Workspace")
    Trace = apps.get_model("traces", "Trace")
    workspace = Workspace.objects.create(name="W", slug="w")
    Trace.objects.create(
        workspace=workspace, source="openai", source_key="openai", external_id="trace_1",
        timestamp="2026-01-01T00:00:00Z", data={"id": "trace_1"},
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(after)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from integrations.models import Integration
    from traces.models import Trace as CurrentTrace

    source = Integration.objects.get(workspace_id=workspace.pk, kind="openai_agents")
    trace = CurrentTrace.objects.get(external_id="trace_1")
    assert (trace.integration_id, trace.source_key) == (source.pk, f"i{source.pk}")


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("traces_trace", "data"),
        # Written at every automatic run's start (a run's ids, then its chunks').
        ("evals_evalrun", "trace_ids"),
        ("evals_evalrunchunk", "trace_ids"),
    ],
)
def test_large_values_are_compressed_with_lz4_on_postgresql(db, table, column):
    """Where the server has LZ4, payloads and run trace ids use it (faster than pglz)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("TOAST compression is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        if not cursor.fetchone()[0]:
            pytest.skip("this server has no LZ4")
        cursor.execute(
            "SELECT attcompression FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = %s",
            [table, column],
        )
        assert cursor.fetchone()[0] == "l"


def test_verdicts_written_before_the_day_counts_are_counted_by_the_migration(transactional_db):
    """The dashboard reads per-day counts of the verdicts: those already stored when
    they were introduced are counted once, and the triggers count the later ones."""
    import datetime as dt

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    before = [("evals", "0021_judge_unpriced_calls")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Workspace = apps.get_model("workspaces", "Workspace")
    EvalSet = apps.get_model("traces", "EvalSet")
    Trace = apps.get_model("traces", "Trace")
    Eval = apps.get_model("evals", "Eval")
    EvalExecution = apps.get_model("evals", "EvalExecution")
    workspace = Workspace.objects.create(name="W", slug="w")
    eval_set = EvalSet.objects.create(workspace=workspace, name="S", criteria="c")
    eval = Eval.objects.create(workspace=workspace, eval_set=eval_set, version=1, code="x")
    for n, passed in enumerate([True, True, False, None]):
        trace = Trace.objects.create(
            workspace=workspace, source="api", external_id=f"t{n}",
            timestamp="2026-01-01T00:00:00Z", data={"id": f"t{n}"},
        )  # fmt: skip
        EvalExecution.objects.create(workspace=workspace, eval=eval, trace=trace, passed=passed)
    old = timezone.now() - dt.timedelta(days=2)
    EvalExecution.objects.filter(passed=False).update(created_at=old)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    from evals.models import EvalExecution as CurrentExecution
    from evals.models import VerdictDay

    def counts():
        return sorted(VerdictDay.objects.values_list("day", "passed", "failed", "errored"))

    today = timezone.localdate()
    assert counts() == [(old.date(), 0, 1, 0), (today, 2, 0, 1)]
    CurrentExecution.objects.filter(passed__isnull=True).update(passed=False)
    assert counts() == [(old.date(), 0, 1, 0), (today, 2, 1, 0)]
