from django.apps import AppConfig
from django.db.backends.signals import connection_created


class TracesConfig(AppConfig):
    name = "traces"

    def ready(self) -> None:
        from traces.fields import register_text_loader

        connection_created.connect(register_text_loader, dispatch_uid="traces.json_as_text")
