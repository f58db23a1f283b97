from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        # The signals deleting schedules and upload files with their rows, however they go.
        from integrations import signals  # noqa: F401
