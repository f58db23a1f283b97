from django.apps import AppConfig


class WorkspacesConfig(AppConfig):
    name = "workspaces"

    def ready(self) -> None:
        # The tenancy check, and the signals keeping cached memberships true.
        from workspaces import checks, signals  # noqa: F401
