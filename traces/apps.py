from django.apps import AppConfig


class TracesConfig(AppConfig):
    name = "traces"
    # (order, label, url name, url names that highlight it)
    nav_items = [
        (10, "Traces", "traces:list", ["list", "detail"]),
        (
            20,
            "Eval sets",
            "traces:evalset_list",
            ["evalset_list", "evalset_create", "evalset_detail", "evalset_edit", "review"],
        ),
    ]

    def onboarding_steps(self, workspace) -> list[dict]:
        """The path to a first eval after traces are in: an eval set, labels, generation."""
        from traces.models import EvalSet, Feedback

        sets = EvalSet.objects.for_workspace(workspace)
        best = 0
        target = 10
        for eval_set in sets.active().only("id", "target_labels")[:20]:
            labelled = (
                Feedback.objects.filter(eval_set=eval_set).values("trace_id").distinct().count()
            )
            if labelled >= eval_set.target_labels:
                best, target = labelled, eval_set.target_labels
                break
            if labelled > best:
                best, target = labelled, eval_set.target_labels
        eval_model = _get_model("evals", "Eval")
        has_eval = (
            eval_model is not None and eval_model.objects.filter(workspace=workspace).exists()
        )
        return [
            {
                "order": 20,
                "title": "Create an eval set",
                "help": "Write down in plain words what makes a trace good, and pick the "
                "traces to judge (a saved filter or hand-picked ones).",
                "done": sets.exists(),
                "url_name": "traces:evalset_create",
            },
            {
                "order": 30,
                "title": f"Label {target} traces",
                "help": "Thumbs up, down or neutral, one trace at a time; keys 1, 2, 3 make it "
                f"quick. {min(best, target)} of {target} so far.",
                "done": best >= target and best > 0,
                "url_name": "traces:review_start",
            },
            {
                "order": 40,
                "title": "Generate your first eval",
                "help": "iofold writes a Python eval_fn that reproduces your labels and tells "
                "you how often it agrees with you.",
                "done": has_eval,
                "url_name": "traces:evalset_list",
            },
        ]


def _get_model(app_label: str, model_name: str):
    from django.apps import apps

    try:
        return apps.get_model(app_label, model_name)
    except LookupError:
        return None
