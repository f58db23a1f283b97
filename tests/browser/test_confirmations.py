"""Actions that ask first: the page's dialog answers for the page of its own they show
without JavaScript."""

import pytest
from playwright.sync_api import expect

from tests.workspaces.helpers import invite
from workspaces.models import Invitation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_cancelling_an_invitation_asks_in_a_dialog(logged_in_page, workspace, owner):
    invitation = invite(workspace, owner, "grace@example.com")
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/members/")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Cancel invitation").click()
    expect(page.get_by_text("grace@example.com")).to_be_visible()
    assert asked and asked[0].startswith("Cancel the invitation for grace@example.com?")
    assert Invitation.objects.filter(pk=invitation.pk).exists()

    # Said yes in the dialog, it is not asked again on a page.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel invitation").click()
    expect(page.get_by_text("Invitation for grace@example.com cancelled.")).to_be_visible()
    assert not Invitation.objects.filter(pk=invitation.pk).exists()
