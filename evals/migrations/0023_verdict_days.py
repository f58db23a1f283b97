"""Verdict days: each eval version's verdicts counted per day, kept by triggers.

The operations dashboard's pass rate counted every verdict of the last 30 days on each
view (at 100,000 traces, 300,000 verdicts: a read of most of the table). These triggers
keep ``evals_verdictday`` equal to that count grouped by eval and day, whatever writes
the verdicts: a run's upsert, a re-run (its day is the first verdict's, its outcome the
new one), a deleted trace, eval or workspace (Django's collector deletes them in bulk),
a workspace import. A deletion only lowers the rows that are there: the collector may
have deleted the eval's or the workspace's counts first.

PostgreSQL: one statement-level trigger per event, reading the statement's rows as a
transition table, so a batch of 1,000 verdicts costs one grouped upsert (ordered by
eval and day: concurrent writers lock the rows in one order). An UPDATE that changes no
outcome nor day (scores pushed, a run unlinked) writes nothing. SQLite (development) has
no transition tables: row triggers. Days are UTC days (TIME_ZONE is UTC), as the
dashboard's TruncDate draws them.

The existing verdicts are counted in the same transaction as the triggers are created:
creating them locks the verdicts' table against writes until the commit, so no verdict
is counted twice or missed.
"""

import django.db.models.deletion
from django.db import migrations, models


def _pg_counts(rows: str, sign: int) -> str:
    """What a transition table's verdicts add to each (eval, day) row; ``sign`` 1 or -1."""
    return f"""
        SELECT eval_id, max(workspace_id) AS workspace_id,
               (created_at AT TIME ZONE 'UTC')::date AS day,
               {sign} * count(*) FILTER (WHERE passed) AS passed,
               {sign} * count(*) FILTER (WHERE NOT passed) AS failed,
               {sign} * count(*) FILTER (WHERE passed IS NULL) AS errored
        FROM {rows} GROUP BY eval_id, day"""


def _pg_upsert(counts: str) -> str:
    return f"""
        INSERT INTO evals_verdictday AS d
            (workspace_id, eval_id, day, passed, failed, errored, created_at, updated_at)
        SELECT workspace_id, eval_id, day, passed, failed, errored, now(), now()
        FROM ({counts}) AS c
        ORDER BY eval_id, day
        ON CONFLICT (eval_id, day) DO UPDATE SET
            passed = d.passed + EXCLUDED.passed, failed = d.failed + EXCLUDED.failed,
            errored = d.errored + EXCLUDED.errored, updated_at = EXCLUDED.updated_at;"""


# An update's change: its new rows counted, its old rows taken off; nothing when no
# verdict changed its outcome or day.
_PG_DELTA = f"""
        SELECT eval_id, max(workspace_id) AS workspace_id, day, sum(passed) AS passed,
               sum(failed) AS failed, sum(errored) AS errored
        FROM ({_pg_counts("new_verdicts", 1)}
              UNION ALL {_pg_counts("old_verdicts", -1)}) AS delta
        GROUP BY eval_id, day
        HAVING sum(passed) <> 0 OR sum(failed) <> 0 OR sum(errored) <> 0"""

PG_FUNCTION = f"""
CREATE FUNCTION evals_count_verdict_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_pg_upsert(_pg_counts("new_verdicts", 1))}
    ELSIF TG_OP = 'UPDATE' THEN
        {_pg_upsert(_PG_DELTA)}
    ELSE
        UPDATE evals_verdictday AS d
        SET passed = d.passed + c.passed, failed = d.failed + c.failed,
            errored = d.errored + c.errored, updated_at = now()
        FROM ({_pg_counts("old_verdicts", -1)}) AS c
        WHERE d.eval_id = c.eval_id AND d.day = c.day;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER evals_verdict_days_insert AFTER INSERT ON evals_evalexecution
    REFERENCING NEW TABLE AS new_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION evals_count_verdict_days();
CREATE TRIGGER evals_verdict_days_update AFTER UPDATE ON evals_evalexecution
    REFERENCING OLD TABLE AS old_verdicts NEW TABLE AS new_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION evals_count_verdict_days();
CREATE TRIGGER evals_verdict_days_delete AFTER DELETE ON evals_evalexecution
    REFERENCING OLD TABLE AS old_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION evals_count_verdict_days();
"""

PG_DROP = """
DROP TRIGGER IF EXISTS evals_verdict_days_insert ON evals_evalexecution;
DROP TRIGGER IF EXISTS evals_verdict_days_update ON evals_evalexecution;
DROP TRIGGER IF EXISTS evals_verdict_days_delete ON evals_evalexecution;
DROP FUNCTION IF EXISTS evals_count_verdict_days();
"""


def _sqlite_add(row: str) -> str:
    return f"""
    INSERT INTO evals_verdictday
        (workspace_id, eval_id, day, passed, failed, errored, created_at, updated_at)
    VALUES ({row}.workspace_id, {row}.eval_id, date({row}.created_at), {row}.passed IS 1,
            {row}.passed IS 0, {row}.passed IS NULL, datetime('now'), datetime('now'))
    ON CONFLICT (eval_id, day) DO UPDATE SET
        passed = passed + excluded.passed, failed = failed + excluded.failed,
        errored = errored + excluded.errored, updated_at = excluded.updated_at;"""


_SQLITE_TAKE = """
    UPDATE evals_verdictday
    SET passed = passed - (OLD.passed IS 1), failed = failed - (OLD.passed IS 0),
        errored = errored - (OLD.passed IS NULL), updated_at = datetime('now')
    WHERE eval_id = OLD.eval_id AND day = date(OLD.created_at);"""

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER evals_verdict_days_insert AFTER INSERT ON evals_evalexecution
    BEGIN {_sqlite_add("NEW")} END""",
    f"""CREATE TRIGGER evals_verdict_days_update AFTER UPDATE ON evals_evalexecution
    WHEN OLD.passed IS NOT NEW.passed OR OLD.eval_id IS NOT NEW.eval_id
        OR date(OLD.created_at) IS NOT date(NEW.created_at)
    BEGIN {_SQLITE_TAKE} {_sqlite_add("NEW")} END""",
    f"""CREATE TRIGGER evals_verdict_days_delete AFTER DELETE ON evals_evalexecution
    BEGIN {_SQLITE_TAKE} END""",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS evals_verdict_days_{event}" for event in ("insert", "update", "delete")
]

BACKFILL = """
INSERT INTO evals_verdictday
    (workspace_id, eval_id, day, passed, failed, errored, created_at, updated_at)
SELECT max(workspace_id), eval_id, {day},
       sum(CASE WHEN passed THEN 1 ELSE 0 END), sum(CASE WHEN NOT passed THEN 1 ELSE 0 END),
       sum(CASE WHEN passed IS NULL THEN 1 ELSE 0 END), {now}, {now}
FROM evals_evalexecution GROUP BY eval_id, {day}
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION)
        day, now = "(created_at AT TIME ZONE 'UTC')::date", "now()"
    else:
        for sql in SQLITE_TRIGGERS:
            schema_editor.execute(sql)
        day, now = "date(created_at)", "datetime('now')"
    schema_editor.execute(BACKFILL.format(day=day, now=now))


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_DROP)
    else:
        for sql in SQLITE_DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):

    dependencies = [
        ('evals', '0022_mark_older_unpriced_calls'),
        ('workspaces', '0003_workspace_deletion_scheduled_for'),
    ]

    operations = [
        migrations.CreateModel(
            name='VerdictDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('day', models.DateField()),
                ('passed', models.IntegerField(default=0)),
                ('failed', models.IntegerField(default=0)),
                ('errored', models.IntegerField(default=0)),
                ('eval', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='verdict_days', to='evals.eval')),
                ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='workspaces.workspace')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('eval', 'day'), name='evals_verdictday_one')],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
