"""Delete what an integration owns outside its own tables when the integration goes."""

from django.db.models.signals import post_delete
from django.dispatch import receiver
from django_celery_beat.models import PeriodicTask

from integrations.models import Integration


@receiver(post_delete, sender=Integration)
def _integration_deleted(sender, instance: Integration, **kwargs) -> None:
    # Its beat schedule points at it only by an argument, so no cascade reaches it: deleted
    # with its workspace or in the admin, the integration left a row firing for ever.
    if instance.periodic_task_id is not None:
        PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()
