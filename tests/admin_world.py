"""A realistic installation for the admin and archive audits: several workspaces, a source
of every kind with its secrets, traces (one large), conversations, eval sets with labels,
versions, runs, executions, judgements, tokens and invitations."""

import datetime as dt

from django.utils import timezone

from evals.models import (
    Activity,
    AutomationSettings,
    AutoRefinement,
    Comment,
    ConversationJudgement,
    Eval,
    EvalExecution,
    EvalRun,
    EvalRunChunk,
    Generation,
    ProviderSettings,
)
from integrations import services as integration_services
from integrations import webhooks
from integrations.models import SyncRun, UploadRun
from integrations.receivers import get_or_create_receiver
from iofold.pipeline import ingest_traces
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import trace_data
from tests.workspaces.helpers import invite
from traces.models import Conversation, Trace
from traces.services import add_traces_to_eval_set, create_eval_set, record_feedback
from workspaces.services import issue_token

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
SECRET = "sk-SECRETMIDDLE-{slug}-{kind}-9f3a"
PROVIDER_KEY = "sk-ant-PROVIDERMIDDLE-{slug}-77b1"


def build_workspace(workspace, *, traces: int = 6, people: int = 3) -> dict:
    """Fill ``workspace``; return the secrets it holds (raw token, webhook secrets...)."""
    slug = workspace.slug
    users = [
        MembershipFactory(
            workspace=workspace,
            user=UserFactory(email=f"p{n}-{slug}@acme.test"),
            role="owner" if n == 0 else "member",
        ).user
        for n in range(people)
    ]
    secrets = []
    integrations = []
    for kind, host in [
        ("langfuse", "http://127.0.0.1:9"),
        ("langsmith", "http://127.0.0.1:9"),
        ("openai", "http://127.0.0.1:9/v1"),
    ]:
        key = SECRET.format(slug=slug, kind=kind)
        integration = integration_services.create_integration(
            workspace=workspace,
            kind=kind,
            name=f"{kind} {slug}",
            host=host,
            public_key="pk-lf-public" if kind == "langfuse" else "",
            secret_key=key,
            options={"project": "default"} if kind == "langsmith" else None,
        )
        secrets.append(key)
        secrets.append(webhooks.regenerate_webhook_secret(integration=integration))
        integrations.append(integration)
        SyncRun.objects.create(workspace=workspace, integration=integration, status="succeeded")
    for kind in ("otlp", "openai_agents"):
        integrations.append(get_or_create_receiver(workspace=workspace, kind=kind))
    UploadRun.objects.create(workspace=workspace, filename="t.jsonl", path="/tmp/nowhere")
    ProviderSettings.objects.create(
        workspace=workspace,
        provider="anthropic",
        model="claude",
        api_key=PROVIDER_KEY.format(slug=slug),
    )
    secrets.append(PROVIDER_KEY.format(slug=slug))
    automation = AutomationSettings.objects.create(
        workspace=workspace,
        webhook_url="https://hooks.example.com/x",
        webhook_secret=f"whsec_AUTOMATIONMIDDLE{slug}00",
    )
    secrets.append(automation.webhook_secret)
    token, raw = issue_token(workspace=workspace, name="ci", created_by=users[0], role="member")
    secrets += [raw, token.digest]
    invitation = invite(workspace, users[0], email=f"new-{slug}@acme.test")
    secrets.append(invitation.token_digest)

    items = []
    for n in range(traces):
        data = trace_data(n)
        data.update(
            id=f"{slug}-t{n}",
            session_id=f"{slug}-chat-{n % 2}",
            timestamp=(T0 + dt.timedelta(minutes=n)).isoformat(),
        )
        items.append(data)
    big = trace_data(10_000, output="x" * 100_000)
    steps = [
        {**step, "id": f"s{n}", "parent_id": None} for n, step in enumerate(big["steps"] * 100)
    ]
    big.update(id=f"{slug}-big", steps=steps)
    items.append(big)
    ingest_traces(workspace=workspace, source="upload", traces=items, integration=None)
    all_traces = list(Trace.objects.for_workspace(workspace).order_by("pk"))

    eval_set = create_eval_set(workspace=workspace, name=f"Refunds {slug}", criteria="answers")
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in all_traces])
    for n, trace in enumerate(all_traces):
        for user in users:
            record_feedback(
                eval_set=eval_set,
                trace=trace,
                user=user,
                rating=["positive", "negative", "neutral"][n % 3],
                note="why",
            )
    v1 = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=1,
        code="def eval_fn(t):\n  return True, ''\n",
        metrics={"accuracy": 1},
    )
    v2 = Eval.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        version=2,
        parent=v1,
        code="def eval_fn(t):\n  return False, ''\n",
        status="active",
        activated_at=timezone.now(),
    )
    Generation.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        parent=v1,
        result=v2,
        provider="offline",
        status="succeeded",
        created_by=users[0],
    )
    for version in (v1, v2):
        run = EvalRun.objects.create(
            workspace=workspace,
            eval=version,
            trigger="manual",
            status="succeeded",
            total=len(all_traces),
        )
        EvalRunChunk.objects.create(workspace=workspace, run=run, index=0)
        for trace in all_traces:
            EvalExecution.objects.create(
                workspace=workspace, eval=version, run=run, trace=trace, passed=True, reason="ok"
            )
        for conversation in Conversation.objects.for_workspace(workspace):
            ConversationJudgement.objects.create(
                workspace=workspace,
                conversation=conversation,
                eval=version,
                completion=1,
                turn_count=conversation.turn_count,
                passed=True,
            )
        Comment.objects.create(workspace=workspace, author=users[0], eval=version, body="hm")
        Activity.objects.create(
            workspace=workspace, eval_set=eval_set, actor=users[0], eval=version, verb="activated"
        )
        AutoRefinement.objects.create(
            workspace=workspace,
            eval_set=eval_set,
            parent=version,
            candidate=v2,
            trigger="drift",
            reason="drift",
        )
    return {
        "secrets": secrets,
        "users": users,
        "eval_set": eval_set,
        "traces": all_traces,
        "integrations": integrations,
        "evals": [v1, v2],
        "token": token,
        "invitation": invitation,
    }
