from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"

    def ready(self) -> None:
        from evals.sandboxing import configure_sandbox

        configure_sandbox()
