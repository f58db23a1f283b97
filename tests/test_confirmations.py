"""Destructive actions ask first, with or without JavaScript.

The page's dialog (data-confirm) sends its yes as ``confirmed=yes``; a form that arrives
without it (no JavaScript) gets a page asking the same question, and nothing changes until
that page's button is pressed. tests/browser/test_confirmations.py covers the dialog.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from integrations.models import Integration
from tests.integrations.helpers import webhook_integration
from tests.workspaces.helpers import invite
from workspaces.models import ApiToken, Invitation, Membership
from workspaces.services import issue_token


@dataclass
class Action:
    name: str
    question: str
    # Build the target in the workspace; return (URL kwargs, whether it is still untouched).
    target: Callable
    user: str = "owner"
    # A GET asks the question too; the webhook secret's GET shows a secret just made.
    asks_on_get: bool = True

    def __str__(self) -> str:
        return self.name


def _member(ws, users):
    membership = Membership.objects.get(workspace=ws, user=users["member"])
    return {"pk": membership.pk}, lambda: Membership.objects.filter(pk=membership.pk).exists()


def _invitation(ws, users):
    invitation = invite(ws, users["owner"], "grace@example.com")
    return {"pk": invitation.pk}, lambda: Invitation.objects.filter(pk=invitation.pk).exists()


def _leave(ws, users):
    membership = Membership.objects.get(workspace=ws, user=users["member"])
    return {}, lambda: Membership.objects.filter(pk=membership.pk).exists()


def _token(ws, users):
    token, _ = issue_token(
        workspace=ws, name="CI pipeline", created_by=users["owner"], role="member"
    )
    return {"pk": token.pk}, lambda: ApiToken.objects.get(pk=token.pk).is_active


def _integration(ws, users):
    integration = webhook_integration(ws)
    # Done: hidden at once, deleted by a worker.
    return {
        "pk": integration.pk
    }, lambda: Integration.objects.present().filter(pk=integration.pk).exists()


def _webhook_secret(ws, users):
    integration = webhook_integration(ws)
    return {
        "pk": integration.pk
    }, lambda: Integration.objects.get(pk=integration.pk).webhook_secret == integration.secret


ACTIONS = [
    Action(
        "workspaces:cancel_invitation", "Cancel the invitation for grace@example.com?", _invitation
    ),
    Action("workspaces:remove_member", "Remove member@acme.test?", _member),
    Action("workspaces:leave", "Leave Acme?", _leave, user="member"),
    Action("workspaces:revoke_token", "Revoke CI pipeline?", _token),
    Action("integrations:delete", "Delete lf?", _integration),
    Action(
        "integrations:webhook_secret",
        "Make a new webhook secret?",
        _webhook_secret,
        asks_on_get=False,
    ),
]


@pytest.mark.parametrize("action", ACTIONS, ids=str)
def test_without_javascript_the_action_asks_on_a_page_first(
    action, client, workspace, owner, member
):
    users = {"owner": owner, "member": member}
    kwargs, untouched = action.target(workspace, users)
    url = reverse(action.name, kwargs={"slug": workspace.slug, **kwargs})
    client.force_login(users[action.user])

    asked = client.post(url)

    html = asked.content.decode()
    assert asked.status_code == 200
    assert 'data-testid="confirm-page"' in html
    assert action.question in html
    assert 'name="confirmed" value="yes"' in html
    assert untouched()

    done = client.post(url, {"confirmed": "yes"})
    assert done.status_code == 302
    assert not untouched()


@pytest.mark.parametrize("action", [a for a in ACTIONS if a.asks_on_get], ids=str)
def test_the_question_page_can_be_opened_again_and_changes_nothing(
    action, client, workspace, owner, member
):
    """Its address stays in the address bar: opening it (or reloading) asks again, not a
    blank "method not allowed", and a yes in the address does nothing."""
    users = {"owner": owner, "member": member}
    kwargs, untouched = action.target(workspace, users)
    url = reverse(action.name, kwargs={"slug": workspace.slug, **kwargs})
    client.force_login(users[action.user])

    asked = client.get(url, {"confirmed": "yes"})

    assert asked.status_code == 200
    assert action.question in asked.content.decode()
    assert untouched()
