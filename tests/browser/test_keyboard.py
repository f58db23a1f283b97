"""Keyboard-only use of the app's shell: menus open and close without a mouse."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_account_menu_closes_on_escape_and_when_tab_leaves_it(logged_in_page, owner, workspace):
    """Before: Escape did nothing, and Tab went on to the page under the open menu, which
    stayed open over it."""
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/")
    menu = page.get_by_test_id("workspace-switcher")
    summary = menu.locator("summary")
    item = menu.get_by_role("link", name="All workspaces / new…")

    summary.focus()
    page.keyboard.press("Enter")
    expect(item).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    expect(item).to_be_hidden()
    expect(summary).to_be_focused()

    page.keyboard.press("Enter")
    expect(item).to_be_visible()
    page.keyboard.press("Shift+Tab")  # to the last workspace link, outside the menu
    expect(item).to_be_hidden()


def test_a_refused_form_opens_on_the_field_to_fix_with_its_error(logged_in_page, owner, workspace):
    """Before: the page came back read from its top, the error somewhere below."""
    page = logged_in_page(owner)
    page.goto("/w/")
    name = page.locator("main form").get_by_role("textbox", name=re.compile("^Name"))
    name.fill("   ")  # passes the browser's required check; the server strips it

    page.get_by_role("button", name="Create workspace").click()

    expect(name).to_be_focused()
    expect(name).to_have_accessible_description("This field is required.")
