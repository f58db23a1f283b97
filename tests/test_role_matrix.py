"""What each role may do, request by request, against one table of the product's rules.

Readers (viewers) read; writers (members) also change the workspace's data; only admins
and owners manage members, invitations, API tokens, integrations and the workspace's
settings; only owners delete the workspace; anyone may leave. An API token acts with its
role (capped by its creator's), so a token of each role is held to the same table.

``tests/test_tenancy.py`` builds the requests (``UI_CASES``, ``API_CASES``) and checks
outsiders and anonymous users; this file checks every member's role. A new URL, or a new
method on one, fails ``test_every_workspace_url_and_method_is_classified`` until it has a
line in ``RULES``.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.factories import MembershipFactory, UserFactory
from tests.test_tenancy import API_CASES, UI_CASES, _ui_url
from workspaces.models import Membership
from workspaces.services import issue_token

READ, WRITE, MANAGE, OWNER, OWN = "read", "write", "manage", "owner", "own"
# The cases' label is another member's (admin@): its reviewer, owners and admins change it.
OTHERS_LABEL = MANAGE
# Which roles each level lets through.
ALLOWED = {
    READ: {"owner", "admin", "member", "viewer"},
    WRITE: {"owner", "admin", "member"},
    MANAGE: {"owner", "admin"},
    OWNER: {"owner"},
    OWN: {"owner", "admin", "member", "viewer"},
}

# (URL name, method) -> level: the single table of expectations.
RULES = {
    # Workspace, members, invitations, tokens.
    ("workspaces:home", "get"): READ,
    ("workspaces:members", "get"): READ,
    ("workspaces:invite", "post"): MANAGE,
    ("workspaces:change_role", "post"): MANAGE,
    ("workspaces:remove_member", "get"): MANAGE,
    ("workspaces:remove_member", "post"): MANAGE,
    ("workspaces:leave", "get"): OWN,
    ("workspaces:leave", "post"): OWN,
    ("workspaces:cancel_invitation", "get"): MANAGE,
    ("workspaces:cancel_invitation", "post"): MANAGE,
    ("workspaces:settings", "get"): MANAGE,
    ("workspaces:settings", "post"): MANAGE,
    ("workspaces:delete", "post"): OWNER,
    ("workspaces:tokens", "get"): MANAGE,
    ("workspaces:tokens", "post"): MANAGE,
    ("workspaces:revoke_token", "get"): MANAGE,
    ("workspaces:revoke_token", "post"): MANAGE,
    ("api-members", "get"): READ,
    # Integrations: configured by managers; members may send traces and start a sync.
    ("integrations:list", "get"): READ,
    ("integrations:detail", "get"): READ,
    ("integrations:create", "get"): MANAGE,
    ("integrations:create", "post"): MANAGE,
    ("integrations:test_new", "post"): MANAGE,
    ("integrations:openai_agents", "get"): READ,
    ("integrations:openai_agents", "post"): MANAGE,
    ("integrations:otlp_setup", "get"): READ,
    ("integrations:otlp_setup", "post"): MANAGE,
    ("integrations:edit", "get"): MANAGE,
    ("integrations:edit", "post"): MANAGE,
    ("integrations:test", "post"): MANAGE,
    ("integrations:test_edit", "post"): MANAGE,
    ("integrations:disable", "post"): MANAGE,
    ("integrations:enable", "post"): MANAGE,
    ("integrations:delete", "get"): MANAGE,
    ("integrations:delete", "post"): MANAGE,
    ("integrations:openai_agents_key", "post"): MANAGE,
    ("integrations:webhook_secret", "get"): MANAGE,
    ("integrations:webhook_secret", "post"): MANAGE,
    ("integrations:sync", "post"): WRITE,
    ("integrations:upload", "get"): WRITE,
    ("integrations:upload", "post"): WRITE,
    ("integrations:run_progress", "get"): READ,
    ("integrations:upload_run", "get"): READ,
    ("api-integrations", "get"): READ,
    ("api-integrations", "post"): MANAGE,
    ("api-integration", "get"): READ,
    ("api-integration", "patch"): MANAGE,
    ("api-integration", "delete"): MANAGE,
    ("api-integration-test", "post"): MANAGE,
    ("api-integration-sync", "post"): WRITE,
    ("api-integration-runs", "get"): READ,
    ("api-sync-run", "get"): READ,
    ("api-otlp-source", "get"): READ,
    ("api-otlp-source", "post"): MANAGE,
    ("api-openai-agents-source", "get"): READ,
    ("api-openai-agents-source", "post"): MANAGE,
    ("api-openai-agents-ingest", "post"): WRITE,
    # Traces, eval sets, review, labels.
    ("traces:list", "get"): READ,
    ("traces:detail", "get"): READ,
    ("traces:conversation_list", "get"): READ,
    ("traces:conversation_detail", "get"): READ,
    ("traces:conversation_turn_steps", "get"): READ,
    ("traces:add_to_eval_set", "post"): WRITE,
    ("traces:bulk_assign", "post"): WRITE,
    ("traces:review_start", "get"): READ,
    ("traces:evalset_list", "get"): READ,
    ("traces:evalset_create", "get"): WRITE,
    ("traces:evalset_create", "post"): WRITE,
    ("traces:evalset_detail", "get"): READ,
    ("traces:evalset_edit", "get"): WRITE,
    ("traces:evalset_edit", "post"): WRITE,
    ("traces:evalset_archive", "post"): WRITE,
    # Deleting for good (in the background): owners and admins; anyone sees the progress.
    ("traces:evalset_delete", "get"): MANAGE,
    ("traces:evalset_delete", "post"): MANAGE,
    ("traces:delete_selected", "post"): MANAGE,
    ("traces:deletion", "get"): READ,
    ("traces:deletion_resume", "post"): MANAGE,
    ("traces:evalset_restore", "post"): WRITE,
    ("traces:evalset_remove_trace", "post"): WRITE,
    ("traces:review", "get"): READ,
    ("traces:review_label", "post"): WRITE,
    ("traces:review_undo", "post"): WRITE,
    ("traces:review_unskip", "post"): WRITE,
    ("traces:review_skip", "post"): WRITE,
    ("traces:label_edit", "post"): OTHERS_LABEL,
    ("traces:label_remove", "post"): OTHERS_LABEL,
    ("traces:label_edit_form", "get"): OTHERS_LABEL,
    ("traces:evalset_import", "get"): WRITE,
    ("traces:evalset_import_scores", "post"): WRITE,
    ("traces:evalset_import_scores_run", "get"): READ,
    ("traces:evalset_assign", "post"): WRITE,
    ("traces:trace_assign", "post"): WRITE,
    ("api-traces", "get"): READ,
    ("api-traces", "post"): WRITE,
    ("api-traces-ingest", "post"): WRITE,
    ("api-trace", "get"): READ,
    ("api-conversations", "get"): READ,
    ("api-conversation", "get"): READ,
    ("api-conversation-labels", "get"): READ,
    ("api-conversation-labels", "post"): WRITE,
    ("api-conversation-runs", "get"): READ,
    ("api-eval-sets", "get"): READ,
    ("api-eval-sets", "post"): WRITE,
    ("api-eval-set", "get"): READ,
    ("api-eval-set", "patch"): WRITE,
    ("api-eval-set", "delete"): WRITE,
    ("api-eval-set-traces", "post"): WRITE,
    ("api-deletions", "get"): READ,
    ("api-deletions", "post"): MANAGE,
    ("api-deletion", "get"): READ,
    ("api-feedback", "get"): READ,
    ("api-feedback", "post"): WRITE,
    ("api-feedback-detail", "get"): READ,
    ("api-feedback-detail", "patch"): OTHERS_LABEL,
    ("api-feedback-detail", "delete"): OTHERS_LABEL,
    # Evals. Provider keys, the automation budget and the shared gallery are managers'.
    ("evals:dashboard", "get"): READ,
    ("evals:drift", "get"): READ,
    ("evals:resume_continuous", "post"): WRITE,
    ("evals:list", "get"): READ,
    ("evals:versions", "get"): READ,
    ("evals:diff", "get"): READ,
    ("evals:matrix", "get"): READ,
    ("evals:matrix_csv", "get"): READ,
    ("evals:export_set", "get"): READ,
    ("evals:detail", "get"): READ,
    ("evals:activate", "post"): WRITE,
    ("evals:archive", "post"): WRITE,
    ("evals:restore", "post"): WRITE,
    ("evals:test", "post"): WRITE,
    ("evals:run_progress", "get"): READ,
    ("evals:edit", "get"): WRITE,
    ("evals:edit", "post"): WRITE,
    ("evals:export", "get"): READ,
    ("evals:cell", "get"): READ,
    ("evals:refine", "post"): WRITE,
    ("evals:compare", "get"): READ,
    ("evals:refinement", "get"): READ,
    ("evals:shadow_compare", "get"): READ,
    ("evals:shadow", "post"): WRITE,
    ("evals:unshadow", "post"): WRITE,
    ("evals:promote", "post"): WRITE,
    ("evals:automation", "get"): MANAGE,
    ("evals:automation", "post"): MANAGE,
    ("evals:set_threshold", "post"): WRITE,
    ("evals:comment", "post"): WRITE,
    ("evals:trace_comments", "get"): READ,
    ("evals:trace_comments", "post"): WRITE,
    ("evals:activity", "get"): READ,
    ("evals:gallery", "get"): READ,
    ("evals:template", "get"): READ,
    ("evals:use_template", "post"): WRITE,
    ("evals:publish", "post"): MANAGE,
    ("evals:settings", "get"): MANAGE,
    ("evals:settings", "post"): MANAGE,
    ("evals:generate", "post"): WRITE,
    ("evals:judge_template", "get"): WRITE,
    ("evals:judge_template", "post"): WRITE,
    ("evals:generation", "get"): READ,
    ("api-eval-set-generate", "post"): WRITE,
    ("api-generation", "get"): READ,
    ("api-evals", "get"): READ,
    ("api-eval", "get"): READ,
    ("api-eval-executions", "get"): READ,
    ("api-eval-run", "post"): WRITE,
    ("api-eval-set-versions", "get"): READ,
    ("api-eval-set-diff", "get"): READ,
    ("api-eval-set-export", "get"): READ,
    ("api-eval-set-matrix", "get"): READ,
    ("api-eval-activate", "post"): WRITE,
    ("api-eval-archive", "post"): WRITE,
    ("api-eval-restore", "post"): WRITE,
    ("api-eval-edit", "post"): WRITE,
    ("api-eval-test", "post"): WRITE,
    ("api-eval-refine", "post"): WRITE,
    ("api-eval-export", "get"): READ,
    ("api-eval-cell", "get"): READ,
    ("api-eval-run-detail", "get"): READ,
    ("api-eval-set-shadow", "get"): READ,
    ("api-eval-set-drift", "get"): READ,
    ("api-eval-set-continuous", "get"): READ,
    ("api-eval-set-resume", "post"): WRITE,
    ("api-eval-shadow", "post"): WRITE,
    ("api-eval-promote", "post"): WRITE,
}

# API URLs that name no workspace, each with why.
NOT_WORKSPACE_API = {
    "api-workspaces": "the user's own workspaces, read through Workspace.objects.for_user",
    "api-schema": "the OpenAPI schema, the same for everyone",
    "api-docs": "the interactive docs page",
    "api-integration-webhook": "signed by the integration's webhook secret, no user",
}

# URLs outside /w/<slug>/, /api/, /accounts/ and /admin/, each with who may use it.
OTHER_URLS = {
    "home": "anyone signed in: leads to their last workspace",
    "healthz": "anyone: the load balancer's probe",
    "metrics": "IOFOLD_METRICS_TOKEN or allowed networks (tests/test_monitoring.py)",
    "workspaces:list": "anyone signed in: their own workspaces",
    "accept_invitation": "the invited address only (tests/workspaces/test_team_flows.py)",
    "api-otlp-traces": "a token that may write (test_only_writing_tokens_send_otlp_traces)",
}

ROLES = ["owner", "admin", "member", "viewer"]
TOKEN_ROLES = ["admin", "member", "viewer"]  # no token is an owner's (issue_token)


def _api_methods():
    """Yield ``(name, method)`` for every method of every API view."""

    def walk(patterns, prefix):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("api/"):
                cls = getattr(p.callback, "cls", None)
                allowed = getattr(cls, "http_method_names", ())
                methods = [
                    m
                    for m in ("get", "post", "put", "patch", "delete")
                    if hasattr(cls, m) and m in allowed
                ]
                for method in methods or ["get"]:
                    yield p.name, method

    yield from walk(get_resolver().url_patterns, "")


def _names(prefix_wanted: str = "", *, outside: tuple[str, ...] = ()) -> set[str]:
    """Names of the URLs under ``prefix_wanted`` and not under any of ``outside``."""
    names = set()

    def walk(patterns, prefix, namespace):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route, p.namespace or namespace)
            elif route.startswith(prefix_wanted) and not (outside and route.startswith(outside)):
                names.add(f"{namespace}:{p.name}" if namespace else p.name)

    walk(get_resolver().url_patterns, "", None)
    return names


def test_every_workspace_url_and_method_is_classified():
    cases = {(c.name, c.method) for c in [*UI_CASES, *API_CASES]}
    api = {key for key in _api_methods() if key[0] not in NOT_WORKSPACE_API}

    assert cases - RULES.keys() == set(), "add these to RULES"
    assert RULES.keys() - cases == set(), "these rules are never requested"
    assert api - cases == set(), "add these API methods to API_CASES and RULES"
    assert _names("w/<slug:slug>/") - {name for name, _ in RULES} == set()
    others = _names(outside=("w/<slug:slug>/", "api/", "accounts/", "admin/"))
    assert others == OTHER_URLS.keys(), "say in OTHER_URLS who may use it"


def _cast(workspace):
    """A user of each role in ``workspace``, owner first."""
    return {
        role: MembershipFactory(
            workspace=workspace, user=UserFactory(email=f"{role}@acme.test"), role=role
        ).user
        for role in ROLES
    }


def _allowed(response) -> bool:
    """Whether the request got past the role check (what it then did is another test's)."""
    if response.status_code in (401, 403, 404, 405):
        return False
    location = response.get("Location", "")
    return not location.startswith(reverse("account_login"))


def _expect(case, role):
    return role in ALLOWED[RULES[(case.name, case.method)]]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", UI_CASES, ids=str)
def test_each_role_gets_exactly_its_pages(case, role, client, workspace):
    users = _cast(workspace)
    url = _ui_url(case, workspace)
    client.force_login(users[role])

    response = getattr(client, case.method)(url, case.data(workspace))

    if _expect(case, role):
        assert _allowed(response), (response.status_code, response.get("Location"))
        assert response.status_code < 500
    else:
        assert response.status_code == 403


def _api_call(api_client, case, workspace, headers):
    return getattr(api_client, case.method)(
        reverse(case.name, kwargs=case.kwargs(workspace)),
        case.data(workspace),
        format="json",
        headers=headers,
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", API_CASES, ids=str)
def test_each_role_gets_exactly_its_api_session(case, role, api_client, workspace):
    users = _cast(workspace)
    api_client.force_login(users[role])

    response = _api_call(api_client, case, workspace, {"X-Workspace": workspace.slug})

    if _expect(case, role):
        assert _allowed(response), (response.status_code, response.content[:300])
        assert response.status_code < 500
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("role", TOKEN_ROLES)
@pytest.mark.parametrize("case", API_CASES, ids=str)
def test_each_token_role_gets_exactly_its_api(case, role, api_client, workspace):
    users = _cast(workspace)
    _, raw = issue_token(workspace=workspace, name="t", created_by=users["owner"], role=role)

    response = _api_call(api_client, case, workspace, {"Authorization": f"Bearer {raw}"})

    if _expect(case, role):
        assert _allowed(response), (response.status_code, response.content[:300])
        assert response.status_code < 500
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("case", API_CASES, ids=str)
def test_anonymous_api_requests_are_refused(case, api_client, workspace):
    _cast(workspace)
    response = _api_call(api_client, case, workspace, {"X-Workspace": workspace.slug})
    assert response.status_code in (401, 403)


def test_a_token_acts_with_no_more_than_its_creators_current_role(api_client, workspace):
    users = _cast(workspace)
    _, raw = issue_token(workspace=workspace, name="t", created_by=users["admin"], role="admin")
    headers = {"Authorization": f"Bearer {raw}"}
    url = reverse("api-integrations")
    body = {"name": "x", "host": "http://h.test"}
    Membership.objects.filter(user=users["admin"]).update(role=Membership.Role.MEMBER)

    assert api_client.post(url, body, format="json", headers=headers).status_code == 403
    assert api_client.get(url, headers=headers).status_code == 200


@pytest.mark.parametrize("role", [*TOKEN_ROLES, None])
def test_only_writing_tokens_send_otlp_traces(role, client, workspace):
    users = _cast(workspace)
    headers = {}
    if role is not None:
        _, raw = issue_token(workspace=workspace, name="t", created_by=users["owner"], role=role)
        headers = {"Authorization": f"Bearer {raw}"}

    response = client.post(
        reverse("api-otlp-traces"), b"{}", content_type="application/json", headers=headers
    )

    expected = {None: 401, "viewer": 403}.get(role, 200)
    assert response.status_code == expected, response.content[:300]
