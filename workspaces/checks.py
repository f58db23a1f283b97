from django.apps import apps
from django.core import checks

from workspaces.models import Workspace


@checks.register(checks.Tags.models)
def check_workspace_scoping(app_configs=None, **kwargs):
    """Every model with a workspace foreign key must be queryable through for_workspace()."""
    errors = []
    for model in apps.get_models():
        if model._meta.app_label in {"admin", "auth", "contenttypes", "sessions"}:
            continue
        has_workspace = any(
            getattr(field, "related_model", None) is Workspace and field.name == "workspace"
            for field in model._meta.get_fields()
            if field.concrete
        )
        if has_workspace and not hasattr(model._default_manager, "for_workspace"):
            errors.append(
                checks.Error(
                    f"{model._meta.label} has a workspace but its default manager has no "
                    "for_workspace().",
                    hint="Build its manager on workspaces.querysets.WorkspaceQuerySet.",
                    obj=model,
                    id="workspaces.E001",
                )
            )
    return errors
