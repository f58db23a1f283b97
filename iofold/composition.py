"""Where the apps are put side by side: the navigation, the onboarding checklist, the
evals' figures on the traces app's eval set pages, the traces that came through no
integration on the integrations page, an integration's deletion with its traces, and a
departing member's review queue.

Each list names every app explicitly, in display order. The apps never look each other up
at runtime: an upstream app's page that shows a downstream app's figures calls this
module, which calls the downstream app by name. See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import ResolverMatch, get_script_prefix, get_urlconf, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    # URL names of the app that highlight the entry; empty: any page of the app.
    highlights: tuple[str, ...] = ()
    # Owners' and admins' pages: shown to others, the entry led only to a refusal.
    manage: bool = False


NAV_ITEMS = [
    NavItem("Overview", "workspaces:home", ("home",)),
    NavItem("Integrations", "integrations:list"),
    NavItem("Traces", "traces:list", ("list", "detail")),
    NavItem(
        "Eval sets",
        "traces:evalset_list",
        ("evalset_list", "evalset_create", "evalset_detail", "evalset_edit", "review"),
    ),
    NavItem(
        "Evals",
        "evals:list",
        (
            "list",
            "versions",
            "diff",
            "matrix",
            "detail",
            "edit",
            "cell",
            "compare",
            "refinement",
            "generation",
            "run_progress",
            "shadow_compare",
            "activity",
        ),
    ),
    NavItem("Gallery", "evals:gallery", ("gallery", "template")),
    NavItem("Operations", "evals:dashboard", ("dashboard", "drift")),
    NavItem("Members", "workspaces:members", ("members",)),
    NavItem("Eval settings", "evals:settings", ("settings", "automation"), manage=True),
    NavItem("Settings", "workspaces:settings", ("settings", "tokens"), manage=True),
]


def navigation(request: HttpRequest) -> dict:
    """Context processor: the current workspace's navigation entries, in display order."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    workspace = getattr(request, "workspace", None)
    if workspace is None:
        return {"workspace_nav": []}
    membership = getattr(request, "membership", None)
    nav = workspace_nav(
        workspace,
        getattr(request, "resolver_match", None),
        can_manage=membership is not None and membership.can_manage,
    )
    return {"workspace_nav": nav}


def workspace_nav(
    workspace, current: ResolverMatch | None = None, *, can_manage: bool = True
) -> list[dict]:
    """Return the navigation entries of a workspace, with their URLs; ``active`` marks the
    entry of the page ``current`` resolved to. Without ``can_manage``, the owners' and
    admins' pages are left out."""
    urls = _nav_urls(workspace.slug, get_script_prefix(), get_urlconf())
    return [
        {
            "label": item.label,
            "url": url,
            "app": item.url_name.split(":")[0],
            "active": current is not None and _highlights(item, current),
        }
        for item, url in zip(NAV_ITEMS, urls, strict=True)
        if can_manage or not item.manage
    ]


def _highlights(item: NavItem, current: ResolverMatch) -> bool:
    if current.app_name != item.url_name.split(":")[0]:
        return False
    return not item.highlights or current.url_name in item.highlights


@lru_cache(maxsize=1024)
def _nav_urls(slug: str, script_prefix: str, urlconf: str | None) -> tuple[str, ...]:
    # Ten reverse() calls cost about a millisecond on every page; a workspace's URLs only
    # change with its slug (and the URL configuration, part of the key for tests).
    return tuple(reverse(item.url_name, kwargs={"slug": slug}) for item in NAV_ITEMS)


def onboarding_steps(workspace) -> list[dict]:
    """Return the checklist a new workspace opens on; each step ticks itself when done."""
    from evals.models import Eval
    from integrations.models import Integration
    from traces.models import EvalSet, Trace
    from traces.selectors import labelling_progress

    labelled, target = labelling_progress(workspace)
    steps = [
        {
            "title": "Connect a source or upload traces",
            "help": "Sync traces from Langfuse, LangSmith or OpenAI, receive them from an "
            "OpenTelemetry or Agents SDK exporter, or upload a JSONL file of agent runs.",
            "done": Integration.objects.for_workspace(workspace).present().exists()
            or Trace.objects.for_workspace(workspace).exists(),
            "url_name": "integrations:list",
        },
        {
            "title": "Create an eval set",
            "help": "Write down in plain words what makes a trace good, and pick the "
            "traces to judge (a saved filter or hand-picked ones).",
            "done": EvalSet.objects.for_workspace(workspace).exists(),
            "url_name": "traces:evalset_create",
        },
        {
            "title": f"Label {target} traces",
            "help": "Good, bad or neutral, one trace at a time; keys 1, 2, 3 make it "
            f"quick. Only good and bad ones count: {min(labelled, target)} of {target} so far.",
            "done": labelled >= target and labelled > 0,
            "url_name": "traces:review_start",
        },
        {
            "title": "Generate your first eval",
            "help": "iofold writes a Python eval_fn that reproduces your labels and tells "
            "you how often it agrees with you.",
            "done": Eval.objects.for_workspace(workspace).exists(),
            "url_name": "traces:evalset_list",
        },
    ]
    for step in steps:
        step["url"] = reverse(step.pop("url_name"), kwargs={"slug": workspace.slug})
    return steps


def release_review_queue(workspace_id: int, user_id: int) -> int:
    """Give back the traces queued for a reviewer who left the workspace or may no longer
    label in it (made viewer), so the next assignment hands them to someone else; return
    how many. Called by ``workspaces.services`` when a membership ends or is demoted."""
    from traces.assignments import release_assignments

    return release_assignments(workspace_id=workspace_id, user_id=user_id)


def responses_waiting(integration) -> int:
    """Return how many of an Agents SDK source's traces wait for their response content to
    be read again (received while reading was stopped); its page says so."""
    from traces.agents_responses import waiting_count

    return waiting_count(integration)


def trace_origins(workspace) -> list[dict]:
    """Return the sources of the workspace's traces that came through no integration (the
    API, an upload, the demo), each {"label", "url"} linking to its traces in the list."""
    from traces.selectors import sources_without_integration

    url = reverse("traces:list", kwargs={"slug": workspace.slug})
    return [
        {"label": label, "url": f"{url}?{urlencode({'source': value})}"}
        for value, label in sources_without_integration(workspace)
    ]


def request_integration_deletion(integration, user, *, delete_traces: bool = False):
    """Hide an integration and queue its deletion, its traces kept (unlinked) or, with
    ``delete_traces``, deleted; return the traces app's ``DeletionRun``. The integrations
    app's page and API call it: they may not import traces, whose worker unlinks or deletes
    the traces before the integration."""
    from traces.deletions import request_integration_deletion as request

    return request(integration=integration, user=user, delete_traces=delete_traces)


def deletion_data(run) -> dict:
    """Return a ``DeletionRun`` as ``GET /api/v1/deletions/<id>/`` shows it."""
    from traces.api import DeletionOut

    return DeletionOut(run).data


def my_queue(workspace, user) -> list:
    """The home page's "my queue": eval sets with traces assigned to the user, unlabelled."""
    from traces.selectors import my_queue as queue

    return queue(workspace, user)


def eval_set_stats(eval_set_ids: list[int]) -> dict[int, dict]:
    """Return the evals app's figures for each eval set (see ``evals.set_stats``)."""
    from evals.set_stats import eval_set_stats

    return eval_set_stats(eval_set_ids)


def eval_set_links(eval_set) -> list[dict]:
    """Return the evals app's pages linked from an eval set's page, for members who can
    write: each {"label", "url", "testid", "help"}."""
    kwargs = {"slug": eval_set.workspace.slug, "pk": eval_set.pk}
    return [
        {
            "label": "Judge template",
            "url": reverse("evals:judge_template", kwargs=kwargs),
            "testid": "judge-template-link",
            "help": "How the LLM judge asks: criteria, what it reads, examples",
        },
    ]


def continuous_pause(eval_set) -> dict | None:
    """Return the evals app's notice when the set's continuous evaluation is paused."""
    from evals.execution.breaker import pause_display

    return pause_display(eval_set)


def conversation_judgements(conversation) -> list:
    """Return the evals app's verdicts on a conversation, newest first (its history)."""
    from evals.execution.continuous import judgement_history

    return judgement_history(conversation)
