"""Keep each user's cached memberships (``workspaces.memberships``) true to the rows."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from workspaces.memberships import forget_memberships, forget_workspace_members
from workspaces.models import Membership, Workspace


@receiver([post_save, post_delete], sender=Membership)
def _membership_changed(sender, instance: Membership, **kwargs) -> None:
    forget_memberships([instance.user_id])


@receiver(post_save, sender=Workspace)
def _workspace_changed(sender, instance: Workspace, created: bool, **kwargs) -> None:
    # A new workspace has no members yet; its first membership forgets its user.
    if not created:
        forget_workspace_members(instance.pk)
