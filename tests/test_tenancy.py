"""Every workspace-scoped page and API endpoint: outsiders get 404, viewers cannot write.

A new feature joins by adding a line to ``UI_CASES`` or ``API_CASES``. ``kwargs`` builds
the URL arguments inside the target workspace (objects it needs are created there).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.urls import reverse

from tests.factories import MembershipFactory, UserFactory
from tests.workspaces.helpers import invite
from workspaces.models import Membership
from workspaces.services import issue_token


@dataclass
class Case:
    name: str
    method: str = "get"
    kwargs: Callable = field(default=lambda ws: {})
    data: Callable = field(default=lambda ws: {})

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.name}"


def _member_pk(ws):
    return {"pk": MembershipFactory(workspace=ws, user=UserFactory()).pk}


def _invitation_pk(ws):
    inviter = Membership.objects.for_workspace(ws).first().user
    invitation = invite(ws, inviter, "x@y.test")
    return {"pk": invitation.pk}


def _token_pk(ws):
    owner = Membership.objects.for_workspace(ws).first().user
    return {"pk": issue_token(workspace=ws, name="ci", created_by=owner, role="member")[0].pk}


def _eval_set_pk(ws):
    from traces.services import create_eval_set

    return {"pk": create_eval_set(workspace=ws, name=f"Set {ws.pk}", criteria="good").pk}


def _trace(ws):
    from tests.traces.factories import TraceFactory

    return TraceFactory(workspace=ws)


def _trace_pk(ws):
    return {"pk": _trace(ws).pk}


def _conversation_turn_pks(ws):
    from iofold.pipeline import ingest_traces
    from tests.traces.factories import trace_data
    from traces.models import Trace

    data = {**trace_data(1), "id": f"turn-{ws.pk}", "session_id": "chat-1"}
    ingest_traces(workspace=ws, source="upload", traces=[data])
    trace = Trace.objects.for_workspace(ws).get(external_id=data["id"])
    return {"pk": trace.conversation_id, "trace_pk": trace.pk}


def _conversation_pk(ws):
    return {"pk": _conversation_turn_pks(ws)["pk"]}


def _conversation_set_pk(ws):
    from traces.services import create_eval_set

    eval_set = create_eval_set(
        workspace=ws, name=f"Chats {ws.pk}", criteria="good", unit="conversation",
        source_kind="filter",
    )  # fmt: skip
    return eval_set.pk


def _eval_set_trace_pks(ws):
    from traces.services import add_traces_to_eval_set, create_eval_set

    trace = _trace(ws)
    eval_set = create_eval_set(workspace=ws, name=f"Picked {trace.pk}", criteria="good")
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[trace.pk])
    return {"pk": eval_set.pk, "trace_pk": trace.pk}


def _eval_set_label_pks(ws):
    feedback_pk = _feedback_pk(ws)["pk"]
    from traces.models import Feedback

    return {"pk": Feedback.objects.get(pk=feedback_pk).eval_set_id, "label_pk": feedback_pk}


def _feedback_pk(ws):
    from traces.services import record_feedback

    ids = _eval_set_trace_pks(ws)
    from traces.models import EvalSet, Trace

    owner = Membership.objects.for_workspace(ws).first().user
    feedback, _ = record_feedback(
        eval_set=EvalSet.objects.get(pk=ids["pk"]),
        trace=Trace.objects.get(pk=ids["trace_pk"]),
        user=owner,
        rating="positive",
    )
    return {"pk": feedback.pk}


def _integration_pk(ws):
    from integrations.models import Integration

    integration = Integration.objects.create(
        workspace=ws, name="lf", host="http://127.0.0.1:9", public_key="pk-lf-1", secret_key="sk"
    )
    return {"pk": integration.pk}


def _otlp_pk(ws):
    from integrations.models import Integration

    integration = Integration.objects.create(
        workspace=ws, name="otel", kind=Integration.Kind.OTLP, host=""
    )
    return {"pk": integration.pk}


def _agents_pk(ws):
    from integrations.models import Integration

    integration = Integration.objects.create(
        workspace=ws, name="agents", kind=Integration.Kind.OPENAI_AGENTS, host=""
    )
    return {"pk": integration.pk}


def _sync_run_kwargs(ws):
    from integrations.models import SyncRun

    pk = _integration_pk(ws)["pk"]
    run = SyncRun.objects.create(workspace=ws, integration_id=pk)
    return {"pk": pk, "run_pk": run.pk}


def _deletion_pk(ws):
    from traces.deletions import request_traces_deletion

    owner = Membership.objects.for_workspace(ws).first().user
    return {
        "run_pk": request_traces_deletion(workspace=ws, trace_ids=[_trace(ws).pk], user=owner).pk
    }


def _deleting_integration_pk(ws):
    """An integration whose deletion (with its traces) is queued: asking again answers."""
    from integrations.models import Integration
    from iofold.composition import request_integration_deletion

    owner = Membership.objects.for_workspace(ws).first().user
    pk = _integration_pk(ws)["pk"]
    request_integration_deletion(Integration.objects.get(pk=pk), owner)
    return {"pk": pk}


def _api_deletion_pk(ws):
    return {"pk": _deletion_pk(ws)["run_pk"]}


def _score_import_run_kwargs(ws):
    from integrations.models import Integration
    from traces.models import ScoreImportRun

    eval_set_pk = _eval_set_pk(ws)["pk"]
    run = ScoreImportRun.objects.create(
        workspace=ws,
        eval_set_id=eval_set_pk,
        integration=Integration.objects.get(pk=_integration_pk(ws)["pk"]),
        user=UserFactory(),
        score_name="correct",
        mapping="true=good",
    )
    return {"pk": eval_set_pk, "run_pk": run.pk}


def _upload_run_kwargs(ws):
    from integrations.models import UploadRun

    run = UploadRun.objects.create(workspace=ws, filename="t.jsonl", path="/nonexistent")
    return {"run_pk": run.pk}


def _sync_run_pk(ws):
    return {"pk": _sync_run_kwargs(ws)["run_pk"]}


def _continuous_eval_pk(ws):
    from evals.models import Eval
    from traces.services import create_eval_set

    eval_set = create_eval_set(workspace=ws, name=f"Drift {ws.pk}", criteria="good")
    code = "def eval_fn(trace):\n    return True, 'ok'\n"
    return {"pk": Eval.objects.create(workspace=ws, eval_set=eval_set, version=1, code=code).pk}


def _continuous_eval_set_pk(ws):
    from evals.models import Eval

    return {"pk": Eval.objects.get(pk=_continuous_eval_pk(ws)["pk"]).eval_set_id}


def _template_version(ws):
    from evals.gallery.services import ensure_builtins
    from evals.models import EvalTemplateVersion

    ensure_builtins()
    return EvalTemplateVersion.objects.get(template__slug="no-refusal")


def _mgmt_kwargs(ws):
    """An eval set with one labelled trace and two versions (v2 refined from v1)."""
    from evals.models import Eval, EvalRun, Generation
    from traces.models import Feedback

    ids = _eval_set_trace_pks(ws)
    owner = Membership.objects.for_workspace(ws).first().user
    Feedback.objects.create(
        workspace=ws, eval_set_id=ids["pk"], trace_id=ids["trace_pk"], user=owner, rating="positive"
    )
    code = "def eval_fn(trace):\n    return True, 'ok'\n"
    v1 = Eval.objects.create(workspace=ws, eval_set_id=ids["pk"], version=1, code=code)
    v2 = Eval.objects.create(
        workspace=ws, eval_set_id=ids["pk"], version=2, code=code + "\n", parent=v1
    )
    run = EvalRun.objects.create(workspace=ws, eval=v2, trigger="manual")
    generation = Generation.objects.create(
        workspace=ws, eval_set_id=ids["pk"], parent=v1, provider="offline"
    )
    return {
        "set": ids["pk"],
        "trace": ids["trace_pk"],
        "eval": v2.pk,
        "run": run.pk,
        "generation": generation.pk,
    }


def _mgmt(*keys):
    """Build URL kwargs from ``_mgmt_kwargs``: ``_mgmt("eval:pk", "trace:trace_pk")``."""

    def kwargs(ws):
        made = _mgmt_kwargs(ws)
        return {name: made[key] for key, name in (k.split(":") for k in keys)}

    return kwargs


def _generated(ws):
    """An eval set with a generated eval version and its finished generation."""
    from evals.models import Eval, Generation
    from traces.services import create_eval_set

    eval_set = create_eval_set(workspace=ws, name=f"Generated {ws.pk}", criteria="good")
    # Measured, so that its pages show their confusion tables too.
    counts = {"tp": 3, "fn": 1, "fp": 1, "tn": 3, "errors": 0, "labelled": 8, "accuracy": 0.75}
    eval = Eval.objects.create(
        workspace=ws,
        eval_set=eval_set,
        version=1,
        code="x = 1",
        provider="offline",
        metrics={"training": counts, "heldout": counts},
    )
    generation = Generation.objects.create(
        workspace=ws, eval_set=eval_set, provider="offline", status="succeeded", result=eval
    )
    return eval_set, eval, generation


def _generated_set_pk(ws):
    return {"pk": _generated(ws)[0].pk}


def _generated_eval_pk(ws):
    return {"pk": _generated(ws)[1].pk}


def _generation_pk(ws):
    return {"pk": _generated(ws)[2].pk}


UI_CASES = [
    Case("workspaces:home"),
    Case("workspaces:members"),
    Case("workspaces:invite", "post", data=lambda ws: {"email": "new@x.test", "role": "member"}),
    Case("workspaces:change_role", "post", _member_pk, lambda ws: {"role": "admin"}),
    Case("workspaces:remove_member", "post", _member_pk),
    Case("workspaces:remove_member", "get", _member_pk),
    Case("workspaces:leave", "post"),
    Case("workspaces:leave", "get"),
    Case("workspaces:cancel_invitation", "post", _invitation_pk),
    Case("workspaces:cancel_invitation", "get", _invitation_pk),
    Case("workspaces:settings"),
    Case("workspaces:settings", "post", data=lambda ws: {"name": "Renamed"}),
    Case("workspaces:delete", "post", data=lambda ws: {"confirm": ws.slug}),
    Case("workspaces:tokens"),
    Case("workspaces:tokens", "post", data=lambda ws: {"name": "x", "role": "member"}),
    Case("workspaces:revoke_token", "post", _token_pk),
    Case("workspaces:revoke_token", "get", _token_pk),
    Case("integrations:list"),
    Case("integrations:create"),
    Case("integrations:create", "post", data=lambda ws: {"name": "x", "region": "eu"}),
    Case("integrations:test_new", "post", data=lambda ws: {"region": "eu"}),
    Case("integrations:openai_agents"),
    Case("integrations:openai_agents", "post"),
    Case("integrations:detail", kwargs=_agents_pk),
    Case("integrations:openai_agents_key", "post", _agents_pk, lambda ws: {"remove": "1"}),
    Case("integrations:upload"),
    Case("integrations:upload", "post"),
    Case("integrations:otlp_setup"),
    Case("integrations:otlp_setup", "post"),
    Case("integrations:detail", kwargs=_otlp_pk),
    Case("integrations:detail", kwargs=_integration_pk),
    Case("integrations:edit", kwargs=_integration_pk),
    Case("integrations:edit", "post", _integration_pk, lambda ws: {"name": "y"}),
    Case("integrations:test", "post", _integration_pk),
    Case("integrations:test_edit", "post", _integration_pk, lambda ws: {"region": "eu"}),
    Case("integrations:sync", "post", _integration_pk),
    Case("integrations:disable", "post", _integration_pk),
    Case("integrations:enable", "post", _integration_pk),
    Case("integrations:delete", "post", _integration_pk),
    Case("integrations:delete", "get", _integration_pk),
    Case("integrations:delete", "post", _deleting_integration_pk),
    Case("integrations:run_progress", kwargs=_sync_run_kwargs),
    Case("integrations:upload_run", kwargs=_upload_run_kwargs),
    Case("traces:list"),
    Case("traces:detail", kwargs=_trace_pk),
    Case("traces:conversation_list"),
    Case("traces:conversation_detail", kwargs=_conversation_pk),
    Case("traces:conversation_turn_steps", kwargs=_conversation_turn_pks),
    Case(
        "traces:add_to_eval_set",
        "post",
        data=lambda ws: {"eval_set": _eval_set_pk(ws)["pk"], "trace": [_trace(ws).pk]},
    ),
    Case(
        "traces:bulk_assign",
        "post",
        data=lambda ws: {
            "eval_set": _eval_set_pk(ws)["pk"],
            "trace": [_trace(ws).pk],
            "reviewer": MembershipFactory(workspace=ws, user=UserFactory()).user_id,
        },
    ),
    Case("traces:review_start"),
    Case("traces:evalset_list"),
    Case("traces:evalset_create"),
    Case(
        "traces:evalset_create",
        "post",
        data=lambda ws: {
            "name": "N",
            "criteria": "c",
            "target_labels": 10,
            "source_kind": "manual",
        },
    ),
    Case("traces:evalset_detail", kwargs=_eval_set_pk),
    Case("traces:evalset_edit", kwargs=_eval_set_pk),
    Case(
        "traces:evalset_edit",
        "post",
        _eval_set_pk,
        lambda ws: {"name": "N", "criteria": "c", "target_labels": 10, "source_kind": "manual"},
    ),
    Case("traces:evalset_archive", "post", _eval_set_pk),
    Case("traces:evalset_restore", "post", _eval_set_pk),
    Case("traces:evalset_delete", kwargs=_eval_set_pk),
    Case("traces:evalset_delete", "post", _eval_set_pk, lambda ws: {"confirmed": "yes"}),
    Case("traces:delete_selected", "post", data=lambda ws: {"trace": [_trace(ws).pk]}),
    Case("traces:deletion", kwargs=_deletion_pk),
    Case("traces:deletion_resume", "post", _deletion_pk),
    Case("traces:evalset_remove_trace", "post", _eval_set_trace_pks),
    Case("traces:review", kwargs=_eval_set_pk),
    Case("traces:review_label", "post", _eval_set_trace_pks, lambda ws: {"rating": "positive"}),
    Case("traces:review_undo", "post", _eval_set_pk),
    Case("traces:review_unskip", "post", _eval_set_pk),
    Case("traces:review_skip", "post", _eval_set_trace_pks),
    # Editing labels (issue 19).
    Case("traces:label_edit", "post", _eval_set_label_pks, lambda ws: {"rating": "negative"}),
    Case("traces:label_remove", "post", _eval_set_label_pks),
    Case("traces:label_edit_form", kwargs=_eval_set_label_pks),
    Case("traces:evalset_import", kwargs=_eval_set_pk),
    Case("traces:evalset_import_scores", "post", _eval_set_pk),
    Case("traces:evalset_import_scores_run", kwargs=_score_import_run_kwargs),
    Case("traces:evalset_assign", "post", _eval_set_pk, lambda ws: {"agreement_target": "0"}),
    Case("traces:trace_assign", "post", _eval_set_trace_pks),
    # Continuous evaluation.
    Case("evals:dashboard"),
    Case("evals:drift", kwargs=_continuous_eval_set_pk),
    Case("evals:resume_continuous", "post", _continuous_eval_set_pk),
    Case("integrations:webhook_secret", "post", _integration_pk),
    Case("integrations:webhook_secret", "get", _integration_pk),
    # Eval management (issue 7).
    Case("evals:list"),
    Case("evals:versions", kwargs=_mgmt("set:pk")),
    Case("evals:diff", kwargs=_mgmt("set:pk")),
    Case("evals:matrix", kwargs=_mgmt("set:pk")),
    Case("evals:matrix_csv", kwargs=_mgmt("set:pk")),
    Case("evals:export_set", kwargs=_mgmt("set:pk")),
    Case("evals:detail", kwargs=_mgmt("eval:pk")),
    Case("evals:activate", "post", _mgmt("eval:pk")),
    Case("evals:archive", "post", _mgmt("eval:pk")),
    Case("evals:restore", "post", _mgmt("eval:pk")),
    Case("evals:test", "post", _mgmt("eval:pk")),
    Case("evals:run_progress", kwargs=_mgmt("eval:pk", "run:run_pk")),
    Case("evals:edit", kwargs=_mgmt("eval:pk")),
    Case("evals:edit", "post", _mgmt("eval:pk"), lambda ws: {"code": "x = 1"}),
    Case("evals:export", kwargs=_mgmt("eval:pk")),
    Case("evals:cell", kwargs=_mgmt("eval:pk", "trace:trace_pk")),
    Case("evals:refine", "post", _mgmt("eval:pk")),
    Case("evals:compare", kwargs=_mgmt("eval:pk")),
    Case("evals:refinement", kwargs=_mgmt("generation:pk")),
    # Shadow A/B (issue 20).
    Case("evals:shadow_compare", kwargs=_mgmt("set:pk")),
    Case("evals:shadow", "post", _mgmt("eval:pk")),
    Case("evals:unshadow", "post", _mgmt("eval:pk")),
    Case("evals:promote", "post", _mgmt("eval:pk")),
    Case("evals:automation"),
    Case("evals:automation", "post", data=lambda ws: {"monthly_refinements": 2}),
    Case("evals:set_threshold", "post", _eval_set_pk, lambda ws: {"contradiction_threshold": 5}),
    Case("evals:comment", "post", _mgmt("eval:pk"), lambda ws: {"body": "hi"}),
    Case("evals:trace_comments", kwargs=_trace_pk),
    Case("evals:trace_comments", "post", _trace_pk, lambda ws: {"body": "hi"}),
    Case("evals:activity", kwargs=_mgmt("set:pk")),
    Case("evals:gallery"),
    Case("evals:template", kwargs=lambda ws: {"pk": _template_version(ws).template_id}),
    Case("evals:use_template", "post", lambda ws: {"pk": _template_version(ws).pk}),
    Case("evals:publish", "post", _mgmt("eval:pk"), lambda ws: {"name": "Shared"}),
    # Eval generation (issue 6).
    Case("evals:settings"),
    Case("evals:settings", "post", data=lambda ws: {"provider": "offline"}),
    Case("evals:generate", "post", _generated_set_pk),
    Case("evals:judge_template", kwargs=_generated_set_pk),
    Case(
        "evals:judge_template",
        "post",
        _generated_set_pk,
        data=lambda ws: {"criterion": "tone", "question": "", "material": "reply", "shots": 2},
    ),
    Case("evals:generation", kwargs=_generation_pk),
]

# API endpoints: ``kwargs`` builds path arguments for an object in the workspace.
API_CASES = [
    Case("api-members"),
    Case("api-integrations"),
    Case("api-integrations", "post", data=lambda ws: {"name": "x", "host": "http://h.test"}),
    Case("api-integration", kwargs=_integration_pk),
    Case("api-otlp-source"),
    Case("api-otlp-source", "post"),
    Case("api-openai-agents-source"),
    Case("api-openai-agents-source", "post"),
    Case("api-integration", "patch", _integration_pk, lambda ws: {"name": "z"}),
    Case("api-integration", "delete", _integration_pk),
    Case("api-integration", "delete", _deleting_integration_pk),
    Case("api-integration-test", "post", _integration_pk),
    Case("api-integration-sync", "post", _integration_pk),
    Case("api-integration-runs", kwargs=_integration_pk),
    Case("api-sync-run", kwargs=_sync_run_pk),
    Case(
        "api-traces-ingest",
        "post",
        data=lambda ws: {"id": "x", "timestamp": "2026-11-20T10:00:00Z"},
    ),
    Case("api-traces"),
    Case("api-traces", "post", data=lambda ws: {"id": "y", "timestamp": "2026-11-20T10:00:00Z"}),
    Case("api-openai-agents-ingest", "post", data=lambda ws: {"data": []}),
    Case("api-trace", kwargs=_trace_pk),
    Case("api-eval-sets"),
    Case("api-eval-sets", "post", data=lambda ws: {"name": "N", "criteria": "c"}),
    Case("api-eval-set", kwargs=_eval_set_pk),
    Case("api-eval-set", "patch", _eval_set_pk, lambda ws: {"target_labels": 5}),
    Case("api-eval-set", "delete", _eval_set_pk),
    Case("api-eval-set-traces", "post", _eval_set_pk, lambda ws: {"trace_ids": [_trace(ws).pk]}),
    Case("api-deletions"),
    Case("api-deletions", "post", data=lambda ws: {"eval_set": _eval_set_pk(ws)["pk"]}),
    Case("api-deletions", "post", data=lambda ws: {"trace_ids": [_trace(ws).pk]}),
    Case("api-deletion", kwargs=_api_deletion_pk),
    Case("api-feedback"),
    Case(
        "api-feedback",
        "post",
        data=lambda ws: {
            **dict(zip(("eval_set", "trace"), _eval_set_trace_pks(ws).values(), strict=True)),
            "rating": "positive",
        },
    ),
    Case("api-conversations"),
    Case("api-conversation", kwargs=_conversation_pk),
    Case("api-conversation-labels", kwargs=_conversation_pk),
    Case(
        "api-conversation-labels",
        "post",
        _conversation_pk,
        lambda ws: {"eval_set": _conversation_set_pk(ws), "rating": "positive"},
    ),
    Case("api-conversation-runs", kwargs=_conversation_pk),
    Case("api-feedback-detail", kwargs=_feedback_pk),
    Case("api-feedback-detail", "patch", _feedback_pk, lambda ws: {"rating": "negative"}),
    Case("api-feedback-detail", "delete", _feedback_pk),
    Case(
        "api-eval-run",
        "post",
        _continuous_eval_pk,
        lambda ws: {"traces": [{"id": "x", "timestamp": "2026-11-20T10:00:00Z", "steps": []}]},
    ),
    # Eval generation (issue 6).
    Case("api-eval-set-generate", "post", _generated_set_pk),
    Case("api-generation", kwargs=_generation_pk),
    Case("api-evals"),
    Case("api-eval", kwargs=_generated_eval_pk),
    Case("api-eval-executions", kwargs=_generated_eval_pk),
    # Eval management (issue 7).
    Case("api-eval-set-versions", kwargs=_mgmt("set:pk")),
    Case("api-eval-set-diff", kwargs=_mgmt("set:pk")),
    Case("api-eval-set-export", kwargs=_mgmt("set:pk")),
    Case("api-eval-set-matrix", kwargs=_mgmt("set:pk")),
    Case("api-eval-activate", "post", _mgmt("eval:pk")),
    Case("api-eval-archive", "post", _mgmt("eval:pk")),
    Case("api-eval-restore", "post", _mgmt("eval:pk")),
    Case("api-eval-edit", "post", _mgmt("eval:pk"), lambda ws: {"code": "x = 1"}),
    Case("api-eval-test", "post", _mgmt("eval:pk")),
    Case("api-eval-refine", "post", _mgmt("eval:pk")),
    Case("api-eval-export", kwargs=_mgmt("eval:pk")),
    Case("api-eval-cell", kwargs=_mgmt("eval:pk", "trace:trace_pk")),
    Case("api-eval-run-detail", kwargs=_mgmt("run:pk")),
    Case("api-eval-set-shadow", kwargs=_mgmt("set:pk")),
    Case("api-eval-set-drift", kwargs=_mgmt("set:pk")),
    Case("api-eval-set-continuous", kwargs=_mgmt("set:pk")),
    Case("api-eval-set-resume", "post", _mgmt("set:pk")),
    Case("api-eval-shadow", "post", _mgmt("eval:pk")),
    Case("api-eval-promote", "post", _mgmt("eval:pk")),
]


def _ui_url(case, ws):
    return reverse(case.name, kwargs={"slug": ws.slug, **case.kwargs(ws)})


@pytest.mark.parametrize("case", UI_CASES, ids=str)
def test_outsider_gets_404_on_every_page(case, client, workspace, owner, outsider):
    url = _ui_url(case, workspace)
    client.force_login(outsider)
    response = getattr(client, case.method)(url, case.data(workspace))
    assert response.status_code == 404


# Actions on the user's own membership, which a viewer may take too.
OWN_MEMBERSHIP = {"workspaces:leave"}


@pytest.mark.parametrize(
    "case", [c for c in UI_CASES if c.method == "post" and c.name not in OWN_MEMBERSHIP], ids=str
)
def test_viewer_cannot_write(case, client, workspace, owner, viewer):
    url = _ui_url(case, workspace)
    client.force_login(viewer)
    response = client.post(url, case.data(workspace))
    assert response.status_code == 403


# Pages that are a form to change something: a viewer who types the address is refused
# the page (workspace_view(writers_only=True) or manage=True), saying why, instead of
# shown a Save whose POST gets a 403 and loses what was typed.
EDIT_PAGES = [
    "traces:evalset_create",
    "traces:evalset_edit",
    "traces:evalset_import",
    "evals:edit",
    "evals:judge_template",
    "integrations:edit",
    "integrations:upload",
]


@pytest.mark.parametrize(
    "case", [c for c in UI_CASES if c.method == "get" and c.name in EDIT_PAGES], ids=str
)
def test_a_viewer_is_refused_an_edit_page_and_told_why(case, client, workspace, owner, viewer):
    url = _ui_url(case, workspace)
    client.force_login(viewer)

    response = client.get(url)

    assert response.status_code == 403
    page = response.content.decode()
    assert 'data-testid="forbidden"' in page and "Your role here is Viewer." in page


def test_every_edit_page_is_in_the_cases():
    assert set(EDIT_PAGES) <= {c.name for c in UI_CASES if c.method == "get"}


@pytest.mark.parametrize("case", UI_CASES, ids=str)
def test_anonymous_is_sent_to_login(case, client, workspace, owner):
    response = getattr(client, case.method)(_ui_url(case, workspace), case.data(workspace))
    assert response.status_code == 302
    assert response.url.startswith(reverse("account_login"))


@pytest.mark.parametrize("case", API_CASES, ids=str)
def test_outsider_session_gets_404_from_api(case, api_client, workspace, owner, outsider):
    url = reverse(case.name, kwargs=case.kwargs(workspace))
    api_client.force_login(outsider)
    response = getattr(api_client, case.method)(
        url, case.data(workspace), format="json", headers={"X-Workspace": workspace.slug}
    )
    assert response.status_code == 404


@pytest.mark.parametrize("case", API_CASES, ids=str)
def test_other_workspace_token_gets_404_for_objects(
    case, api_client, workspace, owner, other_workspace, outsider
):
    """A token of another workspace never reaches this workspace's objects."""
    kwargs = case.kwargs(workspace)
    _, raw = issue_token(workspace=other_workspace, name="t", created_by=outsider, role="admin")
    response = getattr(api_client, case.method)(
        reverse(case.name, kwargs=kwargs),
        case.data(workspace),
        format="json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    if kwargs:
        assert response.status_code == 404
    else:
        # A collection answers for the token's own workspace only: nothing of Acme's (an
        # Acme object named in the body is not found).
        assert response.status_code in (200, 201, 400, 404)
        assert "acme" not in response.content.decode().lower()


@pytest.mark.parametrize("case", [c for c in API_CASES if c.method != "get"], ids=str)
def test_viewer_cannot_write_through_api(case, api_client, workspace, owner, viewer):
    api_client.force_login(viewer)
    response = getattr(api_client, case.method)(
        reverse(case.name, kwargs=case.kwargs(workspace)),
        case.data(workspace),
        format="json",
        headers={"X-Workspace": workspace.slug},
    )
    assert response.status_code == 403
