from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        # The signal deleting an integration's beat schedule with it, however it goes.
        from integrations import signals  # noqa: F401
