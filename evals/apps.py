from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"

    def on_traces_ingested(self, workspace_id: int, trace_ids: list[int]) -> None:
        """Queue the automatic runs of active evals on new or changed traces (after commit)."""
        from evals.models import Eval
        from evals.tasks import run_automatic_evals_task

        # Most ingestions happen before any eval is active: skip the broker round trip.
        active = Eval.objects.for_workspace(workspace_id).filter(status=Eval.Status.ACTIVE)
        if trace_ids and active.exists():
            run_automatic_evals_task.delay(workspace_id, list(trace_ids))
