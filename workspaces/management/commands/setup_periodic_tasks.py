from django.conf import settings
from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask


class Command(BaseCommand):
    help = (
        "Create or update the global periodic tasks by name and delete retired ones by name;"
        " never deletes other schedules."
    )

    def handle(self, *args, **options):
        for name, (task, seconds) in settings.IOFOLD_PERIODIC_TASKS.items():
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            _, created = PeriodicTask.objects.update_or_create(
                name=name, defaults={"task": task, "interval": interval, "enabled": True}
            )
            self.stdout.write(f"{'created' if created else 'updated'} {name} (every {seconds}s)")
        retired = settings.IOFOLD_RETIRED_PERIODIC_TASKS
        for name in PeriodicTask.objects.filter(name__in=retired).values_list("name", flat=True):
            PeriodicTask.objects.filter(name=name).delete()
            self.stdout.write(f"deleted {name} (retired)")
