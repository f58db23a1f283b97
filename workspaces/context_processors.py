from workspaces.models import Workspace


def workspaces(request):
    """Give templates the user's workspaces (for the switcher) and the current one.

    The navigation comes from ``iofold.composition.navigation``, which lists every app.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # A workspace page read them with its membership (``get_workspace_for_user``).
    user_workspaces = getattr(request, "user_workspaces", None)
    if user_workspaces is None:
        user_workspaces = Workspace.objects.for_user(user).only("name", "slug")
    return {
        "user_workspaces": user_workspaces,
        "workspace": getattr(request, "workspace", None),
        "membership": getattr(request, "membership", None),
    }
