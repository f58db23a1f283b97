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


def test_the_labelling_step_counts_good_and_bad_labels_only(workspace, owner):
    from tests.traces.factories import TraceFactory
    from traces.services import create_eval_set, record_feedback

    traces = [TraceFactory(workspace=workspace) for _ in range(3)]
    eval_set = create_eval_set(
        workspace=workspace, name="E", criteria="c", target_labels=2,
        trace_ids=[t.pk for t in traces],
    )  # fmt: skip
    for trace, rating in zip(traces, ["positive", "neutral", "neutral"], strict=True):
        record_feedback(eval_set=eval_set, trace=trace, user=owner, rating=rating)
    step = onboarding_steps(workspace)[2]
    # Neutral labels teach the eval nothing: one of two, not three labelled of two.
    assert step["title"] == "Label 2 traces" and not step["done"]
    assert "Only good and bad ones count: 1 of 2 so far." in step["help"]


def test_members_and_viewers_are_not_offered_the_settings_pages(client, workspace, member, owner):
    """Those pages are the owners' and admins': their entries led others only to a refusal."""
    settings_links = [
        f'href="/w/{workspace.slug}/settings/"',
        f'href="/w/{workspace.slug}/evals/settings/"',
    ]

    def home_page(user) -> str:
        client.force_login(user)
        return client.get(f"/w/{workspace.slug}/").content.decode()

    assert all(link in home_page(owner) for link in settings_links)
    page = home_page(member)
    assert not any(link in page for link in settings_links)
    assert f'href="/w/{workspace.slug}/members/"' in page


def test_an_integration_being_deleted_does_not_tick_the_connect_step(workspace):
    from django.utils import timezone

    from integrations.models import Integration

    Integration.objects.create(
        workspace=workspace, name="leaving", host="http://127.0.0.1:9",
        deletion_requested_at=timezone.now(),
    )  # fmt: skip

    # The integrations page no longer lists it: the step it ticked would point at nothing.
    assert not onboarding_steps(workspace)[0]["done"]
