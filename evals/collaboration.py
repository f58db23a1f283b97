"""Collaboration: comments on eval versions and traces with @mentions, and each eval set's
activity feed (labels, generations, activations, rollbacks, shadows: who, what and why).

A mention is ``@`` followed by a member's email address, or by the part before the ``@``
when only one member's address starts with it. Only members of the workspace can be
mentioned, and each is emailed once per comment.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from evals.exceptions import EvalError
from evals.models import Activity, Comment, Eval, Generation
from iofold.lib.text import has_nul
from traces.models import EvalSet, Feedback, Trace
from workspaces.models import Membership

logger = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 5000
FEED_LIMIT = 100
MENTION = re.compile(r"(?<![\w.+-])@([\w.+-]+(?:@[\w-]+(?:\.[\w-]+)+)?)")


def record_activity(*, eval: Eval, verb: str, actor=None, reason: str = "") -> Activity:
    """Record what happened to an eval version, in its set's history."""
    return Activity.objects.create(
        workspace_id=eval.workspace_id,
        eval_set_id=eval.eval_set_id,
        verb=verb,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        eval=eval,
        reason=reason[:2000],
    )


def mentioned_members(*, workspace, body: str, author=None) -> list:
    """Return the workspace's members the body mentions (never the author, never outsiders)."""
    names = {m.lower().rstrip(".") for m in MENTION.findall(body)}
    if not names:
        return []
    members = [
        m.user
        for m in Membership.objects.for_workspace(workspace).select_related("user")
        if m.user.is_active and (author is None or m.user.pk != author.pk)
    ]
    found = {}
    for name in names:
        exact = [u for u in members if u.email.lower() == name]
        local = [u for u in members if u.email.lower().split("@")[0] == name]
        for user in exact or (local if len(local) == 1 else []):
            found[user.pk] = user
    return sorted(found.values(), key=lambda u: u.email)


def post_comment(*, workspace, author, body: str, eval: Eval | None = None, trace=None, url=""):
    """Save a comment on an eval version or a trace and email the members it mentions."""
    body = (body or "").strip()
    if not body:
        raise EvalError("Write something first.")
    if len(body) > MAX_COMMENT_CHARS:
        raise EvalError(f"Keep a comment under {MAX_COMMENT_CHARS} characters.")
    if has_nul(body):
        raise EvalError("A comment cannot contain a NUL character.")
    if (eval is None) == (trace is None):
        raise ValueError("a comment is on exactly one eval version or trace")
    mentioned = mentioned_members(workspace=workspace, body=body, author=author)
    with transaction.atomic():
        comment = Comment.objects.create(
            workspace=workspace,
            author=author,
            eval=eval,
            trace=trace,
            body=body,
            mentioned=[u.pk for u in mentioned],
        )
        if eval is not None:
            record_activity(
                verb=Activity.Verb.COMMENTED,
                actor=author,
                eval=eval,
                reason=body,
            )
        if mentioned:
            what = f"{eval.eval_set.name} v{eval.version}" if eval else f"trace {trace}"
            subject = (
                f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{author.email} mentioned you on {what}"
            )
            message = f"{author.email} wrote on {what}:\n\n{body}\n\n{url}".rstrip()
            recipients = [u.email for u in mentioned]
            transaction.on_commit(
                lambda: [
                    send_mail(subject=subject, message=message, from_email=None, recipient_list=[r])
                    for r in recipients
                ]
            )
    logger.info("comment posted comment=%s mentions=%d", comment.pk, len(mentioned))
    return comment


def comments_on(*, workspace, eval: Eval | None = None, trace: Trace | None = None):
    qs = Comment.objects.for_workspace(workspace).select_related("author")
    return list(qs.filter(eval=eval) if eval is not None else qs.filter(trace=trace))


@dataclass(frozen=True)
class FeedItem:
    when: datetime
    who: str  # an email, or "iofold" for what it did by itself
    what: str
    url: str = ""
    why: str = ""


def activity_feed(*, eval_set: EvalSet, limit: int = FEED_LIMIT) -> list[FeedItem]:
    """Return the newest things that happened to the set's labels and evals, newest first."""
    slug = eval_set.workspace.slug
    items: list[FeedItem] = []
    for a in (
        Activity.objects.for_workspace(eval_set.workspace_id)
        .filter(eval_set=eval_set)
        .select_related("actor", "eval")
        .only("created_at", "verb", "reason", "eval_id", "actor__email", "eval__version")[:limit]
    ):
        target = f"v{a.eval.version}" if a.eval is not None else ""
        url = reverse("evals:detail", args=[slug, a.eval_id]) if a.eval_id else ""
        items.append(
            FeedItem(
                a.created_at,
                a.actor.email if a.actor else "iofold",
                f"{a.get_verb_display()} {target}".strip(),
                url,
                a.reason,
            )
        )
    for f in (
        Feedback.objects.for_workspace(eval_set.workspace_id)
        .filter(eval_set=eval_set)
        .select_related("user", "trace")
        # The trace's name, never its payload: a feed of 100 labels read 100 payloads.
        .only("created_at", "rating", "note", "trace__name", "trace__external_id", "user__email")
        .order_by("-created_at")[:limit]
    ):
        items.append(
            FeedItem(
                f.created_at,
                f.user.email,
                f"labelled {f.trace} {f.get_rating_display().lower()}",
                reverse("traces:detail", args=[slug, f.trace_id]),
                f.note,
            )
        )
    for g in (
        Generation.objects.for_workspace(eval_set.workspace_id)
        .filter(eval_set=eval_set)
        .select_related("created_by", "parent", "result")
        # The versions' numbers, not their code and prompts.
        .only(
            "created_at",
            "status",
            "error",
            "created_by__email",
            "parent__version",
            "result__version",
        )
        .order_by("-created_at")[:limit]
    ):
        verb = f"refined v{g.parent.version}" if g.parent else "generated an eval"
        if g.result is not None:
            verb += f" into v{g.result.version}"
        elif g.status == "failed":
            verb += " (failed)"
        items.append(
            FeedItem(
                g.created_at,
                g.created_by.email if g.created_by else "iofold",
                verb,
                reverse("evals:detail", args=[slug, g.result_id]) if g.result_id else "",
                g.error,
            )
        )
    items.sort(key=lambda i: i.when, reverse=True)
    return items[:limit]
