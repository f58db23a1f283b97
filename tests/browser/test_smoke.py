import pytest


@pytest.mark.browser
def test_anonymous_visitor_lands_on_login(page):
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.screenshot(path="/tmp/h2-login.png", full_page=True)
