"""A team's first day: sign up, verify, log in, make a workspace, invite, switch."""

import re

import pytest
from django.core import mail
from playwright.sync_api import expect

from tests.browser.helpers import email_link, log_in

PASSWORD = "a long and unusual passphrase 42"


def _sign_up(page, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()


def _confirm_email(page, email: str) -> None:
    confirmation = next(m for m in reversed(mail.outbox) if email in m.to)
    page.goto(email_link(confirmation))
    page.get_by_role("button", name="Confirm email address").click()


def _switch_to(page, name: str) -> None:
    switcher = page.get_by_test_id("workspace-switcher")
    switcher.locator("summary").click()
    switcher.get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


@pytest.mark.browser
def test_team_signs_up_invites_and_switches_workspaces(page, new_page):
    # Sign up; the account can't be used until the email address is confirmed.
    page.goto("/")
    page.get_by_role("link", name="Create an account").click()
    _sign_up(page, "ada@example.com")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))

    _confirm_email(page, "ada@example.com")
    # Confirming logs in and lands in the workspace made at sign-up.
    expect(page.get_by_role("heading", level=1, name="ada's workspace")).to_be_visible()

    # Log out, then in again through the form.
    page.get_by_test_id("workspace-switcher").locator("summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/|/$"))
    log_in(page, "ada@example.com", PASSWORD)
    expect(page.get_by_role("heading", level=1, name="ada's workspace")).to_be_visible()

    # A second workspace, for the team.
    page.get_by_test_id("workspace-switcher").locator("summary").click()
    page.get_by_role("link", name="All workspaces / new…").click()
    page.get_by_label("Name").fill("Support bot")
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("heading", level=1, name="Support bot")).to_be_visible()

    # Invite a colleague.
    page.get_by_role("link", name="Members").click()
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation sent to grace@example.com")).to_be_visible()
    invitation = next(m for m in mail.outbox if "grace@example.com" in m.to)
    assert "Support bot" in invitation.subject

    # The colleague, in another browser, signs up through the link and joins.
    grace = new_page()
    grace.goto(email_link(invitation))
    expect(grace.get_by_text("ada@example.com invited grace@example.com")).to_be_visible()
    grace.get_by_role("button", name="Create an account").click()
    _sign_up(grace, "grace@example.com")
    # Confirming the invited address joins the team's workspace, not an empty one of her own.
    _confirm_email(grace, "grace@example.com")
    expect(grace.get_by_text("Welcome to Support bot.")).to_be_visible()
    expect(grace.get_by_role("heading", level=1, name="Support bot")).to_be_visible()

    # The owner sees the new member; the invitation is no longer pending.
    page.reload()
    members = page.get_by_role("table").first
    expect(members.get_by_text("grace@example.com")).to_be_visible()
    expect(page.get_by_text("Pending invitations")).to_have_count(0)

    # Switch between workspaces with the switcher.
    _switch_to(page, "ada's workspace")
    _switch_to(page, "Support bot")
    grace.get_by_test_id("workspace-switcher").locator("summary").click()
    expect(grace.get_by_role("link", name="grace's workspace")).to_have_count(0)
