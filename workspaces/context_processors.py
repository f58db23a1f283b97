from django.apps import apps
from django.urls import NoReverseMatch, reverse

from workspaces.models import Workspace


def workspaces(request):
    """Give templates the user's workspaces (for the switcher), the current one and its nav."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    workspace = getattr(request, "workspace", None)
    return {
        "user_workspaces": Workspace.objects.for_user(user).only("name", "slug"),
        "workspace": workspace,
        "membership": getattr(request, "membership", None),
        "workspace_nav": workspace_nav(workspace) if workspace is not None else [],
    }


def workspace_nav(workspace: Workspace) -> list[dict]:
    """Return the navigation entries each app declares as ``nav_items`` on its AppConfig."""
    items = []
    for app_config in apps.get_app_configs():
        for order, label, url_name, url_names in getattr(app_config, "nav_items", []):
            try:
                url = reverse(url_name, kwargs={"slug": workspace.slug})
            except NoReverseMatch:
                continue
            items.append(
                {
                    "order": order,
                    "label": label,
                    "url": url,
                    "app": url_name.split(":")[0],
                    "url_names": url_names,
                }
            )
    return sorted(items, key=lambda item: item["order"])
