"""Delete what integrations and uploads own outside the database when their rows go."""

from pathlib import Path

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_celery_beat.models import PeriodicTask

from integrations.models import Integration, UploadRun


@receiver(post_delete, sender=Integration)
def _integration_deleted(sender, instance: Integration, **kwargs) -> None:
    # Its beat schedule points at it only by an argument, so no cascade reaches it: deleted
    # with its workspace or in the admin, the integration left a row firing for ever.
    if instance.periodic_task_id is not None:
        PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()


@receiver(post_delete, sender=UploadRun)
def _upload_deleted(sender, instance: UploadRun, **kwargs) -> None:
    # Deleted with its workspace before a worker ingested it, its file stayed on the disk.
    # After the commit: a deletion rolled back keeps the file its run reads.
    if instance.path:
        path = Path(instance.path)
        transaction.on_commit(lambda: path.unlink(missing_ok=True))
