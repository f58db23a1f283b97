"""The navigation and the onboarding checklist list every app, in one place and in order."""

import pytest

from iofold.composition import onboarding_steps, workspace_nav

pytestmark = pytest.mark.django_db


def test_the_navigation_lists_every_app_in_display_order(workspace):
    nav = workspace_nav(workspace)

    assert [item["label"] for item in nav] == [
        "Overview",
        "Integrations",
        "Traces",
        "Eval sets",
        "Evals",
        "Gallery",
        "Operations",
        "Members",
        "Eval settings",
        "Settings",
    ]
    assert {item["app"] for item in nav} == {"workspaces", "integrations", "traces", "evals"}
    assert all(item["url"].startswith(f"/w/{workspace.slug}/") for item in nav)


def test_a_new_workspace_starts_with_four_steps_to_do(workspace):
    steps = onboarding_steps(workspace)

    assert [step["title"] for step in steps] == [
        "Connect a source or upload traces",
        "Create an eval set",
        "Label 10 traces",
        "Generate your first eval",
    ]
    assert not any(step["done"] for step in steps)
    assert all(step["url"].startswith(f"/w/{workspace.slug}/") for step in steps)
