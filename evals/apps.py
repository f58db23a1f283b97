from django.apps import AppConfig


class EvalsConfig(AppConfig):
    name = "evals"
    # (order, label, url name, url names that highlight it; empty = the whole app)
    nav_items = [
        (30, "Evals", "evals:list", []),
        (40, "Operations", "evals:dashboard", ["dashboard", "drift"]),
        (90, "Eval settings", "evals:settings", ["settings"]),
    ]

    def ready(self) -> None:
        from evals.sandboxing import configure_sandbox

        configure_sandbox()

    def eval_set_stats(self, eval_set_ids: list[int]) -> dict[int, dict]:
        """Return each eval set's number of eval versions and best headline agreement."""
        from django.db.models import Count, Max

        from evals.models import Eval

        rows = (
            Eval.objects.filter(eval_set_id__in=eval_set_ids)
            .values("eval_set_id")
            .annotate(eval_count=Count("id"), best_agreement=Max("agreement"))
            .order_by()
        )
        return {
            row["eval_set_id"]: {
                "eval_count": row["eval_count"],
                "best_agreement": row["best_agreement"],
            }
            for row in rows
        }

    def on_traces_ingested(self, workspace_id: int, trace_ids: list[int]) -> None:
        """Queue the automatic runs of active evals on new or changed traces (after commit)."""
        from evals.models import Eval
        from evals.tasks import run_automatic_evals_task

        # Most ingestions happen before any eval is active: skip the broker round trip.
        active = Eval.objects.for_workspace(workspace_id).filter(status=Eval.Status.ACTIVE)
        if trace_ids and active.exists():
            run_automatic_evals_task.delay(workspace_id, list(trace_ids))
