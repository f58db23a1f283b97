"""Browser tests: Playwright drives Debian's Chromium against pytest-django's live server.

Fixtures for browser tests:

- ``page``: a fresh page in its own context, ``base_url`` set to the live server, so
  ``page.goto("/w/")`` works. Anonymous.
- ``new_page()``: another page in another context (a second person at another computer).
- ``logged_in_page(user)``: a new page whose context already carries a session for ``user``
  (no login form, no email verification needed).
- ``tests.browser.helpers``: ``log_in(page, email, password)`` (the real form) and
  ``email_link(message)`` (the first link in an email).
- Every page reports Content-Security-Policy violations from its console; a test whose
  pages saw one fails at teardown.
- ``live_server`` (pytest-django) runs in-process, so ``django.core.mail.outbox`` sees every
  email the app sends, and the ``settings`` fixture changes what the server sees.

On a failure in the test body every page the test opened is kept under
``test-results/<test>/`` as a full-page PNG plus its HTML.
"""

import os
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client

# Playwright's sync API runs an event loop in the main thread; Django then refuses ORM
# calls from the test body, which are safe here because nothing else runs in that thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("IOFOLD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
RESULTS_DIR = Path(django_settings.BASE_DIR) / "test-results"
DEFAULT_TIMEOUT_MS = 10_000

_PAGES = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Mark everything under tests/browser as ``browser`` (before ``-m`` selects)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launch the system Chromium: Playwright cannot download its own browsers here."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args, live_server):
    return {
        **browser_context_args,
        "base_url": live_server.url,
        "viewport": {"width": 1280, "height": 900},
    }


@pytest.fixture(autouse=True)
def _site_url(settings, live_server):
    """Point links in emails (invitations) at the live server."""
    settings.SITE_URL = live_server.url


@pytest.fixture(autouse=True)
def _clear_cache():
    """allauth rate-limits emails per address in the cache, which outlives a test."""
    cache.clear()


@pytest.fixture
def _csp_violations():
    """Fail the test if any of its pages reported a Content-Security-Policy violation."""
    violations = []
    yield violations
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)


@pytest.fixture
def _pages(request, _csp_violations):
    pages = request.node.stash.setdefault(_PAGES, [])
    pages_violations = (pages, _csp_violations)
    yield pages_violations
    pages.clear()


def _prepare(context, pages_violations):
    pages, violations = pages_violations
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    pages.append(page)
    # Every flow doubles as a Content-Security-Policy check: Chromium reports each
    # violation on the console.
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    return page


@pytest.fixture
def page(context, _pages):
    """An anonymous page on the live server."""
    return _prepare(context, _pages)


@pytest.fixture
def new_page(new_context, _pages):
    """Return a function that opens a page in a new, separate browser context."""

    def _new_page():
        return _prepare(new_context(), _pages)

    return _new_page


@pytest.fixture
def logged_in_page(new_context, _pages, live_server):
    """Return a function that opens a page already logged in as ``user``."""

    def _logged_in_page(user, **context_options):
        """``context_options`` go to Playwright's ``new_context`` (``java_script_enabled``)."""
        client = Client()
        client.force_login(user)
        context = new_context(**context_options)
        context.add_cookies(
            [
                {
                    "name": django_settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                    "url": live_server.url,
                }
            ]
        )
        return _prepare(context, _pages)

    return _logged_in_page


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        _keep_failure_artifacts(item)
    return report


def _keep_failure_artifacts(item) -> None:
    pages = item.stash.get(_PAGES, [])
    if not pages:
        return
    folder = RESULTS_DIR / re.sub(r"[^A-Za-z0-9_.-]+", "-", item.nodeid)[-150:]
    folder.mkdir(parents=True, exist_ok=True)
    for index, page in enumerate(pages):
        if page.is_closed():
            continue
        try:
            page.screenshot(path=str(folder / f"page-{index}.png"), full_page=True)
            (folder / f"page-{index}.html").write_text(page.content())
        except Exception as exc:  # a crashed page must not hide the test's own failure
            (folder / f"page-{index}.error.txt").write_text(repr(exc))
