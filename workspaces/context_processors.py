from workspaces.models import Workspace


def workspaces(request):
    """Give templates the user's workspaces (for the switcher) and the current one.

    The navigation comes from ``iofold.composition.navigation``, which lists every app.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_workspaces": Workspace.objects.for_user(user).only("name", "slug"),
        "workspace": getattr(request, "workspace", None),
        "membership": getattr(request, "membership", None),
    }
