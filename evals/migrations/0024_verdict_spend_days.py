"""Verdict spend days: what each eval version's verdicts cost, per day, kept by triggers.

The operations dashboard's month of judge spend summed every verdict written this month
on each view (at 100,000 traces, 300,000 verdicts: the dashboard's slowest statement).
These triggers keep ``evals_verdictspendday`` equal to that sum grouped by eval and the
day of ``updated_at`` (UTC), the timestamp the dashboard counted by: a run's upsert; a
re-run (the verdict's old cost leaves its old day, the new cost counts on the re-run's
day); a deleted trace, eval or workspace; a workspace import. An UPDATE that changes no
spend nor day (scores pushed, a run unlinked: queryset updates keep ``updated_at``)
writes nothing. The same shape as 0023_verdict_days: PostgreSQL statement-level
triggers over transition tables (one grouped upsert per statement, rows locked in
(eval, day) order), SQLite row triggers; the existing verdicts are summed in the
migration's transaction, while creating the triggers locks the table against writes.
"""

import django.db.models.deletion
from django.db import migrations, models


def _pg_sums(rows: str, sign: int) -> str:
    """What a transition table's verdicts add to each (eval, day) row; ``sign`` 1 or -1."""
    return f"""
        SELECT eval_id, max(workspace_id) AS workspace_id,
               (updated_at AT TIME ZONE 'UTC')::date AS day,
               {sign} * count(*) AS verdicts, {sign} * sum(judge_calls) AS judge_calls,
               {sign} * sum(cost_usd) AS cost_usd, {sign} * sum(unpriced_calls) AS unpriced_calls
        FROM {rows} GROUP BY eval_id, day"""


def _pg_upsert(sums: str) -> str:
    return f"""
        INSERT INTO evals_verdictspendday AS d (workspace_id, eval_id, day, verdicts,
            judge_calls, cost_usd, unpriced_calls, created_at, updated_at)
        SELECT workspace_id, eval_id, day, verdicts, judge_calls, cost_usd, unpriced_calls,
               now(), now()
        FROM ({sums}) AS c
        ORDER BY eval_id, day
        ON CONFLICT (eval_id, day) DO UPDATE SET
            verdicts = d.verdicts + EXCLUDED.verdicts,
            judge_calls = d.judge_calls + EXCLUDED.judge_calls,
            cost_usd = d.cost_usd + EXCLUDED.cost_usd,
            unpriced_calls = d.unpriced_calls + EXCLUDED.unpriced_calls,
            updated_at = EXCLUDED.updated_at;"""


# An update's change: its new rows added, its old rows taken off; nothing when no verdict
# changed its spend or day.
_PG_DELTA = f"""
        SELECT eval_id, max(workspace_id) AS workspace_id, day, sum(verdicts) AS verdicts,
               sum(judge_calls) AS judge_calls, sum(cost_usd) AS cost_usd,
               sum(unpriced_calls) AS unpriced_calls
        FROM ({_pg_sums("new_verdicts", 1)}
              UNION ALL {_pg_sums("old_verdicts", -1)}) AS delta
        GROUP BY eval_id, day
        HAVING sum(verdicts) <> 0 OR sum(judge_calls) <> 0 OR sum(cost_usd) <> 0
            OR sum(unpriced_calls) <> 0"""

PG_FUNCTION = f"""
CREATE FUNCTION evals_sum_verdict_spend_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_pg_upsert(_pg_sums("new_verdicts", 1))}
    ELSIF TG_OP = 'UPDATE' THEN
        {_pg_upsert(_PG_DELTA)}
    ELSE
        UPDATE evals_verdictspendday AS d
        SET verdicts = d.verdicts + c.verdicts, judge_calls = d.judge_calls + c.judge_calls,
            cost_usd = d.cost_usd + c.cost_usd,
            unpriced_calls = d.unpriced_calls + c.unpriced_calls, updated_at = now()
        FROM ({_pg_sums("old_verdicts", -1)}) AS c
        WHERE d.eval_id = c.eval_id AND d.day = c.day;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER evals_verdict_spend_days_insert AFTER INSERT ON evals_evalexecution
    REFERENCING NEW TABLE AS new_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION evals_sum_verdict_spend_days();
CREATE TRIGGER evals_verdict_spend_days_update AFTER UPDATE ON evals_evalexecution
    REFERENCING OLD TABLE AS old_verdicts NEW TABLE AS new_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION evals_sum_verdict_spend_days();
CREATE TRIGGER evals_verdict_spend_days_delete AFTER DELETE ON evals_evalexecution
    REFERENCING OLD TABLE AS old_verdicts
    FOR EACH STATEMENT EXECUTE FUNCTION evals_sum_verdict_spend_days();
"""

PG_DROP = """
DROP TRIGGER IF EXISTS evals_verdict_spend_days_insert ON evals_evalexecution;
DROP TRIGGER IF EXISTS evals_verdict_spend_days_update ON evals_evalexecution;
DROP TRIGGER IF EXISTS evals_verdict_spend_days_delete ON evals_evalexecution;
DROP FUNCTION IF EXISTS evals_sum_verdict_spend_days();
"""


def _sqlite_add(row: str) -> str:
    return f"""
    INSERT INTO evals_verdictspendday (workspace_id, eval_id, day, verdicts, judge_calls,
        cost_usd, unpriced_calls, created_at, updated_at)
    VALUES ({row}.workspace_id, {row}.eval_id, date({row}.updated_at), 1, {row}.judge_calls,
            {row}.cost_usd, {row}.unpriced_calls, datetime('now'), datetime('now'))
    ON CONFLICT (eval_id, day) DO UPDATE SET
        verdicts = verdicts + 1, judge_calls = judge_calls + excluded.judge_calls,
        cost_usd = cost_usd + excluded.cost_usd,
        unpriced_calls = unpriced_calls + excluded.unpriced_calls,
        updated_at = excluded.updated_at;"""


_SQLITE_TAKE = """
    UPDATE evals_verdictspendday
    SET verdicts = verdicts - 1, judge_calls = judge_calls - OLD.judge_calls,
        cost_usd = cost_usd - OLD.cost_usd, unpriced_calls = unpriced_calls - OLD.unpriced_calls,
        updated_at = datetime('now')
    WHERE eval_id = OLD.eval_id AND day = date(OLD.updated_at);"""

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER evals_verdict_spend_days_insert AFTER INSERT ON evals_evalexecution
    BEGIN {_sqlite_add("NEW")} END""",
    f"""CREATE TRIGGER evals_verdict_spend_days_update AFTER UPDATE ON evals_evalexecution
    WHEN OLD.eval_id IS NOT NEW.eval_id OR date(OLD.updated_at) IS NOT date(NEW.updated_at)
        OR OLD.judge_calls IS NOT NEW.judge_calls OR OLD.cost_usd IS NOT NEW.cost_usd
        OR OLD.unpriced_calls IS NOT NEW.unpriced_calls
    BEGIN {_SQLITE_TAKE} {_sqlite_add("NEW")} END""",
    f"""CREATE TRIGGER evals_verdict_spend_days_delete AFTER DELETE ON evals_evalexecution
    BEGIN {_SQLITE_TAKE} END""",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS evals_verdict_spend_days_{event}"
    for event in ("insert", "update", "delete")
]

BACKFILL = """
INSERT INTO evals_verdictspendday (workspace_id, eval_id, day, verdicts, judge_calls,
    cost_usd, unpriced_calls, created_at, updated_at)
SELECT max(workspace_id), eval_id, {day}, count(*), sum(judge_calls), sum(cost_usd),
       sum(unpriced_calls), {now}, {now}
FROM evals_evalexecution GROUP BY eval_id, {day}
"""


def create_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION)
        day, now = "(updated_at AT TIME ZONE 'UTC')::date", "now()"
    else:
        for sql in SQLITE_TRIGGERS:
            schema_editor.execute(sql)
        day, now = "date(updated_at)", "datetime('now')"
    schema_editor.execute(BACKFILL.format(day=day, now=now))


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PG_DROP)
    else:
        for sql in SQLITE_DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):

    dependencies = [
        ('evals', '0023_verdict_days'),
        ('workspaces', '0003_workspace_deletion_scheduled_for'),
    ]

    operations = [
        migrations.CreateModel(
            name='VerdictSpendDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('day', models.DateField()),
                ('verdicts', models.BigIntegerField(default=0)),
                ('judge_calls', models.BigIntegerField(default=0)),
                ('cost_usd', models.DecimalField(decimal_places=10, default=0, max_digits=28)),
                ('unpriced_calls', models.BigIntegerField(default=0)),
                ('eval', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='spend_days', to='evals.eval')),
                ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to='workspaces.workspace')),
            ],
            options={
                'indexes': [models.Index(fields=['workspace', 'day'], name='verdictspendday_ws_day_idx')],
                'constraints': [models.UniqueConstraint(fields=('eval', 'day'), name='evals_verdictspendday_one')],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
