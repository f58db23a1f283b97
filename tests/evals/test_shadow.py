"""Shadow A/B: both versions judge new traces, only the active one speaks to the source."""

# ruff: noqa: F811

import pytest
from django.urls import reverse
from django.utils import timezone

from evals.execution import continuous, scores
from evals.execution.shadow import compare_shadow
from evals.metrics.paired import compare_paired, difference_interval, mcnemar_exact
from evals.models import Eval, EvalExecution, EvalRun
from evals.versions import services as version_services
from iofold.pipeline import ingest_traces
from tests.integrations.conftest import fake_langfuse, make_integration  # noqa: F401
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from traces.models import Feedback

REFUND = """def eval_fn(trace):
    return "refund" in str(trace.get("output") or ""), "refund?"
"""
ALWAYS = """def eval_fn(trace):
    return True, "fine"
"""


# --- the statistics -------------------------------------------------------------------------


def test_mcnemar_exact_and_mid_p_match_the_binomial_by_hand():
    # b=1, c=9: P(X<=1 | n=10, 1/2) = 11/1024; exact = 22/1024; mid-p = 2*(11-5)/1024.
    exact, mid = mcnemar_exact(1, 9)
    assert exact == pytest.approx(22 / 1024)
    assert mid == pytest.approx(12 / 1024)
    assert mcnemar_exact(9, 1) == (exact, mid)  # two-sided: symmetric
    assert mcnemar_exact(0, 0) == (1.0, 1.0)
    assert mcnemar_exact(5, 5)[0] == 1.0


def test_interval_is_centred_on_the_difference_and_narrows_with_pairs():
    diff, low, high = difference_interval(b=2, c=12, n=40)
    assert diff == pytest.approx(0.25)
    assert 0 < low < 0.25 < high < 1
    _, wide_low, wide_high = difference_interval(b=1, c=6, n=20)
    _, low2, high2 = difference_interval(b=10, c=60, n=200)
    assert (high2 - low2) < (wide_high - wide_low)
    with pytest.raises(ValueError):
        difference_interval(b=5, c=5, n=6)


def test_a_clear_win_is_beyond_noise_and_a_near_tie_is_not():
    win = compare_paired([(False, True)] * 12 + [(True, False)] * 1 + [(True, True)] * 20)
    assert (win.b, win.c, win.n) == (1, 12, 33)
    assert win.challenger_wins and not win.incumbent_wins
    tie = compare_paired([(False, True)] * 4 + [(True, False)] * 3 + [(True, True)] * 20)
    assert not tie.challenger_wins and not tie.incumbent_wins
    lose = compare_paired([(True, False)] * 12 + [(True, True)] * 5)
    assert lose.incumbent_wins and not lose.challenger_wins


# --- the shadow run -------------------------------------------------------------------------


def _version(eval_set, version, code, status):
    return Eval.objects.create(
        workspace=eval_set.workspace,
        eval_set=eval_set,
        version=version,
        code=code,
        provider="offline",
        status=status,
        activated_at=timezone.now() if status == Eval.Status.ACTIVE else None,
    )


@pytest.mark.django_db
def test_both_versions_judge_new_traces_and_only_the_active_one_reaches_langfuse(
    workspace, fake_langfuse, make_integration
):
    fake = fake_langfuse()
    integration = make_integration(fake)
    eval_set = EvalSetFactory(
        workspace=workspace, score_to_langfuse=True, source_kind="filter", saved_filter={}
    )
    active = _version(eval_set, 1, REFUND, Eval.Status.ACTIVE)
    challenger = version_services.shadow_eval(eval=_version(eval_set, 2, ALWAYS, "draft"))
    traces = [trace_data(0), trace_data(1, output="No idea.")]
    result = ingest_traces(
        workspace=workspace, source="langfuse", integration=integration, traces=traces
    )

    runs = continuous.start_automatic_runs(
        workspace_id=workspace.pk, trace_ids=result.trace_ids, enqueue=False
    )
    for run in runs:
        continuous.execute_automatic_run(run_id=run.pk)

    assert sorted(r.eval_id for r in runs) == [active.pk, challenger.pk]
    assert EvalExecution.objects.filter(eval=challenger).count() == 2
    sent = {s["metadata"]["eval_id"] for s in fake.scores.values()}
    assert sent == {active.pk} and len(fake.scores) == 2
    assert not EvalExecution.objects.filter(eval=challenger, score_pushed_at__isnull=False)
    # The periodic resend leaves the shadow's verdicts alone too.
    assert scores.push_pending_scores().pushed == 0

    # Promoted, its recent verdicts go out with the next resend, in place of the active's.
    version_services.activate_eval(eval=challenger)
    assert scores.push_pending_scores().pushed == 2
    assert {s["metadata"]["eval_id"] for s in fake.scores.values()} == {challenger.pk}
    assert len(fake.scores) == 2


@pytest.mark.django_db
def test_only_one_shadow_per_set_and_never_the_active_one(workspace):
    eval_set = EvalSetFactory(workspace=workspace)
    active = _version(eval_set, 1, REFUND, Eval.Status.ACTIVE)
    first = version_services.shadow_eval(eval=_version(eval_set, 2, ALWAYS, "draft"))
    second = version_services.shadow_eval(eval=_version(eval_set, 3, ALWAYS, "draft"))
    first.refresh_from_db()
    assert (first.status, second.status) == ("draft", "shadow")
    with pytest.raises(version_services.EvalActionError):
        version_services.shadow_eval(eval=active)


def _constructed(workspace, user, *, shadow_right: int, active_right: int, both: int):
    """Traces both judged as new traffic, labelled so each version is right where told."""
    eval_set = EvalSetFactory(workspace=workspace)
    active = _version(eval_set, 1, REFUND, Eval.Status.ACTIVE)
    challenger = version_services.shadow_eval(eval=_version(eval_set, 2, ALWAYS, "draft"))
    runs = {
        e.pk: EvalRun.objects.create(
            workspace=workspace, eval=e, trigger=EvalRun.Trigger.AUTOMATIC, status="succeeded"
        )
        for e in (active, challenger)
    }
    plan = [(False, True)] * shadow_right + [(True, False)] * active_right + [(True, True)] * both
    for active_right_here, shadow_right_here in plan:
        trace = TraceFactory(workspace=workspace)
        Feedback.objects.create(
            workspace=workspace, trace=trace, eval_set=eval_set, user=user, rating="positive"
        )
        for eval, right in ((active, active_right_here), (challenger, shadow_right_here)):
            EvalExecution.objects.create(
                workspace=workspace,
                eval=eval,
                run=runs[eval.pk],
                trace=trace,
                passed=right,
                duration_ms=3.0 if eval is active else 5.0,
            )
    return eval_set, active, challenger


@pytest.mark.django_db
def test_comparison_counts_disagreement_labels_and_time(workspace, owner):
    _, active, challenger = _constructed(workspace, owner, shadow_right=12, active_right=1, both=20)
    c = compare_shadow(active=active, shadow=challenger)
    assert (c.shared, c.labelled, c.disagreements) == (33, 33, 13)
    assert (c.paired.incumbent_correct, c.paired.challenger_correct) == (21, 32)
    assert c.challenger_wins
    assert (c.active_latency.mean_ms, c.shadow_latency.mean_ms) == (3.0, 5.0)


@pytest.mark.django_db
def test_promote_only_when_the_shadow_wins_beyond_noise(client, workspace, owner):
    client.force_login(owner)
    eval_set, active, challenger = _constructed(
        workspace, owner, shadow_right=3, active_right=2, both=10
    )
    page = client.get(reverse("evals:shadow_compare", args=[workspace.slug, eval_set.pk]))
    assert b"No difference beyond noise" in page.content
    assert b'data-testid="promote"' not in page.content
    client.post(reverse("evals:promote", args=[workspace.slug, challenger.pk]))
    challenger.refresh_from_db()
    assert challenger.status == "shadow"

    eval_set, active, challenger = _constructed(
        workspace, owner, shadow_right=15, active_right=0, both=10
    )
    page = client.get(reverse("evals:shadow_compare", args=[workspace.slug, eval_set.pk]))
    assert b'data-testid="promote"' in page.content
    client.post(reverse("evals:promote", args=[workspace.slug, challenger.pk]))
    challenger.refresh_from_db()
    active.refresh_from_db()
    assert (challenger.status, active.status) == ("active", "draft")


@pytest.mark.django_db
def test_a_fresh_shadow_says_what_to_do_instead_of_showing_empty_statistics(
    client, workspace, owner
):
    from django.utils.html import strip_tags

    client.force_login(owner)
    eval_set, _, _ = _constructed(workspace, owner, shadow_right=0, active_right=0, both=0)

    page = client.get(reverse("evals:shadow_compare", args=[workspace.slug, eval_set.pk]))

    text = " ".join(strip_tags(page.content.decode()).split())
    assert "Nothing to compare yet: none of the new traces both versions judged has a label." in (
        text
    )
    # No interval of [-100%, 100%] nor a p-value of 1 computed from no pair at all.
    assert "-100%" not in text and "1.0000" not in text


@pytest.mark.django_db
def test_the_api_compares_and_refuses_a_promotion_within_noise(api_client, workspace, owner):
    from workspaces.services import issue_token

    _, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="member")
    headers = {"Authorization": f"Bearer {raw}"}
    eval_set, active, challenger = _constructed(
        workspace, owner, shadow_right=3, active_right=2, both=10
    )
    body = api_client.get(
        reverse("api-eval-set-shadow", args=[eval_set.pk]), headers=headers
    ).json()
    assert (body["active"], body["shadow"]) == (active.pk, challenger.pk)
    assert body["comparison"]["paired"]["b"] == 2 and body["comparison"]["paired"]["c"] == 3
    refused = api_client.post(reverse("api-eval-promote", args=[challenger.pk]), headers=headers)
    assert refused.status_code == 400 and "beyond noise" in refused.json()["detail"]
    challenger.refresh_from_db()
    assert challenger.status == "shadow"
