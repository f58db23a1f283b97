from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"
    # (order, label, url name, url names that highlight it; empty = the whole app)
    nav_items = [
        (0, "Overview", "workspaces:home", ["home"]),
        (90, "Members", "workspaces:members", ["members"]),
        (95, "Settings", "workspaces:settings", ["settings", "tokens"]),
    ]

    def ready(self) -> None:
        from workspaces import checks  # noqa: F401  (registers the tenancy check)
