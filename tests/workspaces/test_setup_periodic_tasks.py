import io

from django.conf import settings
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from iofold.lib.tasks import registered_task


def _row(name: str, task: str) -> PeriodicTask:
    interval, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=name, task=task, interval=interval)


def test_it_upserts_the_global_schedules_and_deletes_only_retired_ones(db):
    _row("reap stale sync runs", "integrations.tasks.reap_stale_sync_runs_task")
    _row("reap stale generations and eval runs", "evals.tasks.reap_stale_runs_task")
    kept = _row("sync integration 7", "integrations.tasks.sync_integration_on_schedule_task")

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    call_command("setup_periodic_tasks", stdout=io.StringIO())

    rows = dict(PeriodicTask.objects.values_list("name", "task"))
    assert rows == {
        **{name: task for name, (task, _) in settings.IOFOLD_PERIODIC_TASKS.items()},
        kept.name: kept.task,
    }
    assert rows["reap stale runs"] == "iofold.reaper.reap_stale_runs_task"


def test_every_global_schedule_names_a_registered_task():
    for task, _ in settings.IOFOLD_PERIODIC_TASKS.values():
        assert registered_task(task).name == task
