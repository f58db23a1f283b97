"""The Content-Security-Policy is on, and the UI still works without a single violation.

Every page is opened in Chromium with listeners for `securitypolicyviolation` events and
console messages; htmx interactions (filters, swaps, the review flow, test connection) and
the small static behaviours (select all, auto-submit, confirm) are exercised on the way.
"""

import re

import pytest
from playwright.sync_api import expect

from integrations.services import create_integration
from tests.evals.builders import two_judged_versions
from tests.traces.factories import TraceFactory, trace_data
from traces.models import EvalSet
from traces.services import add_traces_to_eval_set, create_eval_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Recorded by the page itself, before any of its own scripts run.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} ` +
                    `at ${e.sourceFile || document.location.pathname}:${e.lineNumber}`);
});
"""


class Watch:
    """Collect CSP violations, CSP console messages and script errors from pages."""

    def __init__(self):
        self.problems: list[str] = []

    def attach(self, page):
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        return page

    def _console(self, message):
        text = message.text
        if re.search(r"Content.Security.Policy|Refused to", text, re.I):
            self.problems.append(f"console {message.type}: {text}")

    def check(self, page):
        """Record the page's violations so far; wait a beat for late reports first."""
        page.wait_for_timeout(100)
        path = page.url
        self.problems += [f"{path}: {v}" for v in page.evaluate("window.__csp || []")]
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture
def watch():
    return Watch()


@pytest.fixture
def content(workspace, owner):
    """Something on every page: traces, a labelled set with two eval versions, a connection."""
    eval_set, traces, v1, v2 = two_judged_versions(workspace)
    integration = create_integration(
        workspace=workspace,
        name="Langfuse prod",
        host="http://127.0.0.1:9",
        public_key="pk-lf-browser",
        secret_key="sk-lf-browser",
    )
    review_traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(4)]
    review_set = create_eval_set(
        workspace=workspace, name="To review", criteria="Answers the question.", created_by=owner
    )
    add_traces_to_eval_set(eval_set=review_set, trace_ids=[t.pk for t in review_traces])
    return {
        "eval_set": eval_set,
        "traces": traces,
        "v1": v1,
        "v2": v2,
        "integration": integration,
        "review_set": review_set,
    }


def test_main_pages_load_without_a_csp_violation(logged_in_page, watch, workspace, owner, content):
    page = watch.attach(logged_in_page(owner))
    ws = f"/w/{workspace.slug}"
    eval_set, v1, v2 = content["eval_set"], content["v1"], content["v2"]
    trace = content["traces"][0]
    pages = [
        f"{ws}/",
        f"{ws}/traces/{trace.pk}/",
        f"{ws}/traces/eval-sets/",
        f"{ws}/traces/eval-sets/{eval_set.pk}/",
        f"{ws}/traces/eval-sets/new/",
        f"{ws}/evals/{v2.pk}/compare/",
        f"{ws}/evals/sets/{eval_set.pk}/versions/",
        f"{ws}/evals/dashboard/",
        f"{ws}/evals/settings/",
        f"{ws}/evals/{v2.pk}/edit/",
        f"{ws}/evals/sets/{eval_set.pk}/diff/?a=1&b=2",
        f"{ws}/integrations/",
        f"{ws}/integrations/{content['integration'].pk}/",
        f"{ws}/integrations/opentelemetry/",
        f"{ws}/integrations/new/?kind=openai",
        f"{ws}/integrations/openai-agents/",
        f"{ws}/members/",
        f"{ws}/settings/",
        f"{ws}/tokens/",
        "/w/",
        "/accounts/email/",
        "/admin/",
    ]
    for path in pages:
        response = page.goto(path)
        assert response.status < 400, path
        watch.check(page)

    # The OpenTelemetry source's page, once the owner has created it.
    page.goto(f"{ws}/integrations/opentelemetry/")
    page.get_by_test_id("otlp-create").click()
    expect(page.get_by_test_id("otlp-received")).to_be_visible()
    watch.check(page)

    # Eval pages: highlighted code and the shaded confusion table keep their looks.
    page.goto(f"{ws}/evals/{v1.pk}/")
    keyword = page.locator(".code .k").first
    expect(keyword).to_be_visible()
    assert keyword.evaluate("e => getComputedStyle(e).color") == "rgb(169, 13, 145)"  # #A90D91
    cell = page.get_by_test_id("confusion").locator(".cell").first
    assert cell.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    watch.check(page)

    # htmx: filter the matrix in place; static JS: the evals list's auto-submitting filter.
    page.goto(f"{ws}/evals/sets/{eval_set.pk}/matrix/")
    page.locator("#matrix-filters input[type=checkbox]").first.check()
    expect(page).to_have_url(re.compile(r"disagreements"))
    page.goto(f"{ws}/evals/")
    page.get_by_label("Status").select_option("active")
    expect(page).to_have_url(re.compile(r"status=active"))
    watch.check(page)

    # data-confirm: dismissing the dialog keeps the integration.
    page.goto(f"{ws}/integrations/{content['integration'].pk}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("button", name="Delete", exact=True)).to_be_visible()
    watch.check(page)


def test_trace_list_selection_and_new_eval_set_work_under_the_policy(
    logged_in_page, watch, workspace, owner, content
):
    page = watch.attach(logged_in_page(owner))
    page.goto(f"/w/{workspace.slug}/traces/")
    page.get_by_label("Select all").check()
    total = page.locator("input[name=trace]").count()
    expect(page.locator("#selected-count")).to_have_text(str(total))
    page.get_by_label("Select all").uncheck()
    expect(page.locator("#selected-count")).to_have_text("0")
    boxes = page.locator("input[name=trace]")
    boxes.nth(0).check()
    boxes.nth(1).check()
    expect(page.locator("#selected-count")).to_have_text("2")
    picked = {boxes.nth(0).get_attribute("value"), boxes.nth(1).get_attribute("value")}

    page.get_by_role("button", name="New eval set from selection").click()
    expect(page.get_by_test_id("evalset-form")).to_be_visible()
    assert "csrfmiddlewaretoken" not in page.url
    page.locator("input[name=name]").fill("Picked in the browser")
    page.locator("textarea[name=criteria]").fill("Good answers.")
    page.get_by_test_id("evalset-form").locator("button[type=submit]").last.click()
    expect(page.get_by_role("heading", name=re.compile("Picked in the browser"))).to_be_visible()
    eval_set = EvalSet.objects.get(name="Picked in the browser")
    assert {str(pk) for pk in eval_set.memberships.values_list("trace_id", flat=True)} == picked
    watch.check(page)


def test_review_flow_works_under_the_policy(logged_in_page, watch, workspace, owner, content):
    page = watch.attach(logged_in_page(owner))
    review_set = content["review_set"]
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/{review_set.pk}/review/")
    expect(page.get_by_test_id("progress")).to_contain_text("0 traces labelled good or bad, of")
    page.keyboard.press("1")
    expect(page.get_by_test_id("progress")).to_contain_text("1 trace labelled good or bad, of")
    page.get_by_test_id("rate-negative").click()
    expect(page.get_by_test_id("progress")).to_contain_text("2 traces labelled good or bad, of")
    page.keyboard.press("u")
    expect(page.get_by_test_id("notice")).to_have_text("Label undone.")
    page.get_by_test_id("skip").click()
    expect(page.get_by_test_id("notice")).to_have_text("Skipped.")
    watch.check(page)


def test_connect_form_checks_keys_with_htmx_under_the_policy(
    logged_in_page, watch, workspace, owner
):
    page = watch.attach(logged_in_page(owner))
    page.goto(f"/w/{workspace.slug}/integrations/new/")
    page.locator("#id_public_key").fill("abc")
    page.locator("#id_secret_key").fill("sk-lf-x")
    page.get_by_test_id("test-connection").click()
    expect(page.get_by_test_id("connection-result")).to_contain_text("starts with pk-lf-")
    # The htmx indicator is hidden by iofold.css, not by styles htmx would inject.
    expect(page.locator(".htmx-indicator")).to_be_hidden()
    watch.check(page)


def test_swagger_ui_works_offline_under_the_policy(page, watch, live_server):
    watch.attach(page)
    outside = []
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(live_server.url) else None,
    )
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert outside == []
    watch.check(page)


def test_login_page_has_no_violation(page, watch):
    watch.attach(page)
    page.goto("/accounts/login/")
    expect(page.locator("form")).to_be_visible()
    watch.check(page)
