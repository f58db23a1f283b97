"""The checklist a new workspace opens on; each step ticks itself when done."""

from django.urls import NoReverseMatch, reverse

from workspaces.models import Workspace


def onboarding_steps(workspace: Workspace) -> list[dict]:
    """Return the onboarding steps with their state; apps that don't exist yet are skipped."""
    from django.apps import apps

    steps = []
    for app_config in apps.get_app_configs():
        provider = getattr(app_config, "onboarding_steps", None)
        if provider is not None:
            steps.extend(provider(workspace))
    steps.sort(key=lambda step: step["order"])
    for step in steps:
        try:
            step["url"] = reverse(step.pop("url_name"), kwargs={"slug": workspace.slug})
        except NoReverseMatch:
            step["url"] = None
    return steps
