"""Content-Security-Policy: on every response, and no page of ours needs anything inline."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.urls import reverse

from evals.versions.display import code_css
from tests.test_tenancy import UI_CASES, _ui_url

pytestmark = pytest.mark.django_db

HEADER = "Content-Security-Policy"


def directives(response) -> dict[str, list[str]]:
    assert HEADER in response, f"no {HEADER} header"
    policy = {}
    for part in response[HEADER].split(";"):
        name, *values = part.split()
        policy[name] = values
    return policy


def assert_strict_scripts(response) -> dict[str, list[str]]:
    policy = directives(response)
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts == ["'self'"], scripts
    assert "'unsafe-inline'" not in policy.get("script-src-elem", [])
    assert "'unsafe-inline'" not in policy.get("script-src-attr", [])
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    return policy


class InlineFinder(HTMLParser):
    """Collect everything in a page that a strict CSP would block."""

    def __init__(self):
        super().__init__()
        self.problems = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.problems.append(f"inline <script> at line {self.getpos()[0]}")
        if tag == "style":
            self.problems.append(f"<style> at line {self.getpos()[0]}")
        for name, value in attrs.items():
            if name.startswith("on") or name == "style" or name.startswith("hx-on"):
                self.problems.append(f"{tag} {name}={value!r}")
            if value and re.match(r"\s*javascript:", value, re.I):
                self.problems.append(f"{tag} {name}={value!r}")
        if tag in ("script", "link", "img") and attrs.get("src", attrs.get("href", "/")):
            url = attrs.get("src") or attrs.get("href") or ""
            if re.match(r"(https?:)?//", url):
                self.problems.append(f"{tag} loads {url} from another origin")


def inline_problems(html: str) -> list[str]:
    finder = InlineFinder()
    finder.feed(html)
    return finder.problems


@pytest.fixture
def pages_data(workspace, owner):
    """A workspace with content on every page: traces, labels, evals, runs, a chart."""
    from tests.evals.builders import two_judged_versions

    return two_judged_versions(workspace)


@pytest.mark.parametrize("case", [c for c in UI_CASES if c.method == "get"], ids=str)
def test_every_page_has_a_strict_policy_and_nothing_inline(case, client, workspace, owner):
    client.force_login(owner)
    response = client.get(_ui_url(case, workspace))
    policy = assert_strict_scripts(response)
    assert policy["style-src"] == ["'self'"]
    if response.get("Content-Type", "").startswith("text/html"):
        assert inline_problems(response.content.decode()) == []


def test_pages_full_of_content_have_nothing_inline(client, workspace, owner, pages_data):
    eval_set, traces, v1, v2 = pages_data
    client.force_login(owner)
    pages = [
        reverse("traces:list", args=[workspace.slug]),
        reverse("traces:detail", args=[workspace.slug, traces[0].pk]),
        reverse("traces:evalset_detail", args=[workspace.slug, eval_set.pk]),
        reverse("traces:review", args=[workspace.slug, eval_set.pk]),
        reverse("evals:versions", args=[workspace.slug, eval_set.pk]),
        reverse("evals:detail", args=[workspace.slug, v1.pk]),
        reverse("evals:diff", args=[workspace.slug, eval_set.pk]) + "?a=1&b=2",
        reverse("evals:matrix", args=[workspace.slug, eval_set.pk]),
        reverse("evals:cell", args=[workspace.slug, v2.pk, traces[3].pk]),
        reverse("evals:compare", args=[workspace.slug, v2.pk]),
        reverse("evals:dashboard", args=[workspace.slug]),
        reverse("workspaces:members", args=[workspace.slug]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_strict_scripts(response)
        assert inline_problems(response.content.decode()) == [], page


@pytest.mark.parametrize(
    "name", ["account_login", "account_signup", "account_reset_password", "healthz", "home"]
)
def test_public_pages_have_the_policy(client, name):
    response = client.get(reverse(name))
    assert_strict_scripts(response)
    if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
        assert inline_problems(response.content.decode()) == []


def test_error_pages_have_the_policy(client, owner):
    client.force_login(owner)
    assert_strict_scripts(client.get("/w/no-such-workspace/traces/"))


def test_admin_has_the_strict_policy(client, db):
    from accounts.models import User

    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    response = client.get(reverse("admin:index"))
    assert directives(response)["style-src"] == ["'self'"]
    assert_strict_scripts(response)
    assert inline_problems(response.content.decode()) == []


def test_swagger_ui_is_served_locally_under_the_policy(client, db):
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    policy = assert_strict_scripts(response)
    # Swagger UI's own markup sets styles inline; scripts stay same-origin only.
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    html = response.content.decode()
    assert "cdn" not in html.lower() and "https://" not in html
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert len(sources) >= 4
    for url in sources:
        assert url.startswith(("/static/drf_spectacular_sidecar/", "/api/docs/?")), url
        if url.startswith("/api/docs/?"):
            script = client.get(url.replace("&amp;", "&"))
            assert script.status_code == 200
            assert script["Content-Type"].startswith("application/javascript")
            assert "validatorUrl" in script.content.decode()
    problems = [p for p in inline_problems(html) if not p.startswith("<style>")]
    assert problems == []
    # The files come from the installed, pinned package.
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_browsable_api_keeps_scripts_strict(client, workspace, owner):
    client.force_login(owner)
    response = client.get(
        reverse("api-traces"), headers={"Accept": "text/html", "X-Workspace": workspace.slug}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    policy = assert_strict_scripts(response)
    # DRF's templates carry <style> and style= (third-party); scripts stay strict.
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    problems = inline_problems(response.content.decode())
    assert [p for p in problems if "style" not in p] == []


def test_json_api_has_the_strict_policy(client, workspace, owner):
    client.force_login(owner)
    response = client.get(reverse("api-traces"), headers={"X-Workspace": workspace.slug})
    assert directives(response)["style-src"] == ["'self'"]


def test_htmx_is_configured_for_the_policy(client, owner):
    client.force_login(owner)
    html = client.get(reverse("workspaces:list")).content.decode()
    assert '"includeIndicatorStyles": false' in html
    assert '"allowEval": false' in html


def test_pygments_stylesheet_is_current():
    """static/css/pygments.css is generated; regenerate it when Pygments changes."""
    css = (Path(settings.BASE_DIR) / "static" / "css" / "pygments.css").read_text()
    assert code_css() in css
