from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    # (order, label, url name, url names that highlight it; empty = the whole app)
    nav_items = [(10, "Integrations", "integrations:list", [])]

    def onboarding_steps(self, workspace) -> list[dict]:
        """Step 1 of the checklist: get traces in, from Langfuse or an upload."""
        from django.apps import apps

        from integrations.models import Integration

        # Looked up by name: traces is downstream of integrations.
        Trace = apps.get_model("traces", "Trace")

        has_integration = Integration.objects.for_workspace(workspace).exists()
        has_traces = Trace.objects.for_workspace(workspace).exists()
        return [
            {
                "order": 10,
                "title": "Connect Langfuse or upload traces",
                "help": "Sync traces from Langfuse, or upload a JSONL file of agent runs.",
                "done": has_integration or has_traces,
                "url_name": "integrations:list",
            }
        ]
