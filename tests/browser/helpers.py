"""Helpers for browser tests."""

import re


def log_in(page, email: str, password: str) -> None:
    """Log in through the real form and wait until the app has redirected away from it."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def email_link(message) -> str:
    """Return the first http(s) link in an email's body."""
    match = re.search(r"https?://\S+", message.body)
    assert match, f"no link in email {message.subject!r}:\n{message.body}"
    return match.group(0)
