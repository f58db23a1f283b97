"""Comments with @mentions that email members, and each eval set's activity feed."""

import pytest
from django.core import mail
from django.urls import reverse

from evals.collaboration import activity_feed
from evals.models import Comment, Generation
from tests.evals.builders import labelled_set, make_eval
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import TraceFactory

pytestmark = pytest.mark.django_db


def test_a_comment_on_a_version_emails_the_members_it_mentions(
    client, workspace, owner, django_capture_on_commit_callbacks
):
    eval_set, _ = labelled_set(workspace)
    v1 = make_eval(eval_set, version=1)
    alice = MembershipFactory(workspace=workspace, user=UserFactory(email="alice@acme.test")).user
    bob = MembershipFactory(workspace=workspace, user=UserFactory(email="bob@acme.test")).user
    # Same name, other workspace: never mentioned, never emailed.
    UserFactory(email="carol@other.test")
    client.force_login(owner)

    with_mentions = "Looks wrong on refunds, @alice and @bob@acme.test, and @carol please check."
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("evals:comment", args=[workspace.slug, v1.pk]), {"body": with_mentions})

    comment = Comment.objects.get()
    assert (comment.eval, comment.author, comment.body) == (v1, owner, with_mentions)
    assert sorted(comment.mentioned) == sorted([alice.pk, bob.pk])
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@acme.test", "bob@acme.test"]
    assert f"{owner.email} mentioned you" in mail.outbox[0].subject
    assert with_mentions in mail.outbox[0].body
    page = client.get(reverse("evals:detail", args=[workspace.slug, v1.pk]))
    assert with_mentions.encode() in page.content


def test_a_blank_comment_is_refused_and_nothing_saved(client, workspace, owner):
    eval_set, _ = labelled_set(workspace)
    v1 = make_eval(eval_set, version=1)
    client.force_login(owner)
    client.post(reverse("evals:comment", args=[workspace.slug, v1.pk]), {"body": "   "})
    assert not Comment.objects.exists()


def test_comments_on_a_trace_load_into_its_page(client, workspace, owner):
    trace = TraceFactory(workspace=workspace)
    client.force_login(owner)
    url = reverse("evals:trace_comments", args=[workspace.slug, trace.pk])
    client.post(url, {"body": "The tool call failed silently here."})
    assert Comment.objects.get().trace == trace
    part = client.get(url)
    assert b"The tool call failed silently here." in part.content
    detail = client.get(reverse("traces:detail", args=[workspace.slug, trace.pk]))
    assert url.encode() in detail.content  # the page loads them


def test_the_feed_shows_labels_generations_activations_and_rollbacks_with_who_and_why(
    client, workspace, owner
):
    eval_set, _ = labelled_set(workspace, good=1, bad=1)
    v1 = make_eval(eval_set, version=1)
    v2 = make_eval(eval_set, version=2, parent=v1)
    Generation.objects.create(
        workspace=workspace,
        eval_set=eval_set,
        parent=v1,
        provider="offline",
        status="succeeded",
        result=v2,
        created_by=owner,
    )
    client.force_login(owner)
    activate = "evals:activate"
    client.post(reverse(activate, args=[workspace.slug, v2.pk]), {"reason": "better recall"})
    client.post(reverse(activate, args=[workspace.slug, v1.pk]), {"reason": "v2 fails refunds"})
    client.post(reverse("evals:shadow", args=[workspace.slug, v2.pk]), {"reason": "try again"})

    feed = activity_feed(eval_set=eval_set)
    whats = [(i.who, i.what, i.why) for i in feed]
    assert (owner.email, "rolled back to v1", "v2 fails refunds") in whats
    assert (owner.email, "activated v2", "better recall") in whats
    assert (owner.email, "put in shadow v2", "try again") in whats
    assert (owner.email, "refined v1 into v2", "") in whats
    assert sum(i.what.startswith("labelled ") for i in feed) == 2
    page = client.get(reverse("evals:activity", args=[workspace.slug, eval_set.pk]))
    assert b"v2 fails refunds" in page.content and b"rolled back to v1" in page.content


def test_the_feed_reads_the_newest_labels_by_index_and_no_payload_or_code(workspace, owner):
    """A set's feed lists its newest labels and generations: it reads neither the labelled
    traces' payloads nor the versions' code and prompts, and finds the newest labels from
    an index rather than by sorting every label of the set (PostgreSQL told not to scan
    nor sort, as with a large set; SQLite as is)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    eval_set, _ = labelled_set(workspace, good=2, bad=2, user=owner)
    v1 = make_eval(eval_set, version=1)
    Generation.objects.create(
        workspace=workspace, eval_set=eval_set, provider="offline", status="succeeded", result=v1
    )
    with CaptureQueriesContext(connection) as captured:
        feed = activity_feed(eval_set=eval_set)
    assert sum(i.what.startswith("labelled ") for i in feed) == 4

    statements = [q["sql"] for q in captured]
    assert not [s for s in statements if '"traces_trace"."data"' in s]
    assert not [s for s in statements if '"evals_eval"."code"' in s]
    (labels,) = [s for s in statements if s.startswith('SELECT "traces_feedback"')]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for method in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                cursor.execute(f"SET LOCAL {method} = off")  # as with a large set
            cursor.execute(f"EXPLAIN {labels}")
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {labels}")
        plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
    assert "feedback_set_created_idx" in plan, plan
