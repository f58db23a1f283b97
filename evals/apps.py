from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"

    def ready(self) -> None:
        # Registers the tasks that services enqueue by name (evals.queue).
        from evals import tasks  # noqa: F401
        from evals.sandboxing import configure_sandbox

        configure_sandbox()
