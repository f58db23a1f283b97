"""On a phone the top navigation folds into a menu, and keyboard hints are hidden."""

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import expect

from tests.evals.builders import REFUSAL_CODE, make_eval, record
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data
from tests.workspaces.helpers import invite
from traces.services import create_eval_set, record_feedback

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def phone_page(browser, browser_context_args, _pages, live_server):
    """A logged-in page on a 390x844 touch screen, as Chromium emulates a phone."""
    from tests.browser.conftest import _prepare

    contexts = []

    def _open(user, **options):
        client = Client()
        client.force_login(user)
        phone = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
        context = browser.new_context(**{**browser_context_args, **phone, **options})
        contexts.append(context)
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

    yield _open
    for context in contexts:
        context.close()


def test_the_top_navigation_collapses_into_a_menu(phone_page, owner, workspace):
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/")
    nav = page.locator("#app-nav")
    expect(nav).to_be_hidden()
    toggle = page.get_by_test_id("nav-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(nav).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    nav.get_by_role("link", name="Traces").click()
    page.wait_for_url("**/traces/")
    expect(page.locator("#app-nav")).to_be_hidden()


def test_without_javascript_a_phone_shows_the_links_and_no_dead_menu_button(
    phone_page, owner, workspace
):
    page = phone_page(owner, java_script_enabled=False)
    page.goto(f"/w/{workspace.slug}/")
    expect(page.get_by_test_id("nav-toggle")).to_be_hidden()
    nav = page.locator("#app-nav")
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Traces").click()
    page.wait_for_url("**/traces/")


def test_desktop_shows_the_links_and_no_menu_button(logged_in_page, owner, workspace):
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/")
    expect(page.locator("#app-nav")).to_be_visible()
    expect(page.get_by_test_id("nav-toggle")).to_be_hidden()


def test_keyboard_hints_hide_on_touch_screens(phone_page, logged_in_page, owner, workspace):
    trace = TraceFactory(workspace=workspace, data=trace_data(1))
    eval_set = create_eval_set(
        workspace=workspace, name="Phone", criteria="Answers.", trace_ids=[trace.pk]
    )
    url = f"/w/{workspace.slug}/traces/eval-sets/{eval_set.pk}/review/"
    phone = phone_page(owner)
    phone.goto(url)
    expect(phone.get_by_test_id("review-card")).to_be_visible()
    expect(phone.get_by_test_id("shortcuts")).to_be_hidden()
    expect(phone.get_by_test_id("rate-positive").locator("kbd")).to_be_hidden()
    desktop = logged_in_page(owner)
    desktop.goto(url)
    expect(desktop.get_by_test_id("shortcuts")).to_be_visible()


@pytest.mark.parametrize(
    "path", ["evals/gallery/", "evals/automation/", "activity", "traces/eval-sets/"]
)
def test_wide_tables_scroll_in_their_box_not_the_page(phone_page, owner, workspace, path):
    trace = TraceFactory(workspace=workspace, data=trace_data(1))
    eval_set = create_eval_set(
        workspace=workspace, name="Phone", criteria="Answers.", trace_ids=[trace.pk]
    )
    if path == "activity":
        note = "Answered the question asked, with the order number it looked up."
        record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive", note=note)
        path = f"evals/sets/{eval_set.pk}/activity/"
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/{path}")
    expect(page.locator("main table").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_long_eval_set_name_wraps_instead_of_widening_the_page(phone_page, owner, workspace):
    """A name without spaces (a pasted id, a slug) in a title, a breadcrumb, a button and a
    filter's options: each page still fits the phone, nothing scrolled sideways."""
    trace = TraceFactory(workspace=workspace, data=trace_data(1))
    name = "support-quality-" + "longname" * 20
    eval_set = create_eval_set(workspace=workspace, name=name, criteria="A.", trace_ids=[trace.pk])
    page = phone_page(owner)
    for path in (
        f"traces/eval-sets/{eval_set.pk}/",
        f"evals/sets/{eval_set.pk}/activity/",
        f"evals/sets/{eval_set.pk}/drift/",
        f"evals/sets/{eval_set.pk}/judge/",
        "evals/",
        "traces/",
    ):
        page.goto(f"/w/{workspace.slug}/{path}")
        expect(page.locator("main")).to_contain_text(name[:40])
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path


def test_a_diff_keeps_its_line_numbers_whole(phone_page, owner, workspace):
    eval_set = EvalSetFactory(workspace=workspace)
    padded = REFUSAL_CODE + "".join(
        f"# note {n}: why the rule reads the output\n" for n in range(9)
    )
    make_eval(eval_set, version=1, code=REFUSAL_CODE)
    make_eval(eval_set, version=2, code=padded)
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/diff/")
    number = page.locator("table.diff td.diff_header", has_text="14").last
    expect(number).to_be_visible()
    # One line box: "14", not "1" above "4".
    lines = number.evaluate(
        "el => { const r = document.createRange(); r.selectNodeContents(el);"
        " return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }"
    )
    assert lines == 1


def test_the_agents_sdk_endpoint_fits_a_phone(phone_page, owner, workspace):
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/integrations/openai-agents/")
    expect(page.get_by_test_id("openai-agents-endpoint")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_an_eval_sets_labels_read_as_short_rows_on_a_phone(phone_page, owner, workspace):
    question = "Where is my order? " * 12  # inputs and outputs run to a few lines
    traces = [
        TraceFactory(
            workspace=workspace,
            data={**trace_data(n), "input": {"question": question}, "output": question},
        )
        for n in range(3)
    ]
    eval_set = create_eval_set(
        workspace=workspace, name="Phone", criteria="Answers.", trace_ids=[t.pk for t in traces]
    )
    for trace in traces:
        record_feedback(
            eval_set=eval_set, trace=trace, user=owner, rating="negative", note="Never looked."
        )
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/{eval_set.pk}/")
    row = page.get_by_test_id("label-row").first
    row.scroll_into_view_if_needed()
    # The label and the remove button show without scrolling the table sideways.
    expect(row.get_by_test_id("row-label")).to_be_in_viewport()
    table = page.get_by_test_id("label-table")
    assert table.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")
    # Name and label, two lines of input and output, the reviewer: not a column of words.
    assert row.bounding_box()["height"] < 150


def test_a_failed_syncs_retry_and_the_kappa_help_fit_a_phone(phone_page, owner, workspace):
    from integrations import services as integration_services
    from integrations.models import SyncRun

    integration = integration_services.create_integration(
        workspace=workspace, name="Langfuse prod", host="https://cloud.langfuse.com",
        public_key="pk-lf-1", secret_key="sk-lf-1",
    )  # fmt: skip
    SyncRun.objects.create(
        workspace=workspace, integration=integration, status=SyncRun.Status.FAILED, error="down"
    )
    eval_set = EvalSetFactory(workspace=workspace)
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/integrations/")
    retry = page.get_by_test_id("retry-sync")
    expect(retry).to_be_visible()
    box = retry.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390  # on screen, no sideways scroll

    page.goto(eval_set.get_absolute_url())
    help_box = page.get_by_test_id("kappa-help")
    expect(help_box).to_be_visible()
    line = float(help_box.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)"))
    assert help_box.bounding_box()["height"] <= 2 * line  # one line until opened
    help_box.locator("summary").click()
    expect(help_box).to_contain_text("Cohen's kappa")


@pytest.mark.parametrize("screen", ["phone", "desktop"])
def test_members_buttons_are_a_buttons_width_not_the_cells(
    phone_page, logged_in_page, owner, member, workspace, screen
):
    invite(workspace, owner, "grace@example.com")
    page = (phone_page if screen == "phone" else logged_in_page)(owner)
    page.goto(f"/w/{workspace.slug}/members/")
    for name in ("Remove", "Cancel invitation"):
        button = page.get_by_role("button", name=name)
        expect(button).to_be_visible()
        # Its label, its padding and its border: no wider (Pico stretched it to the cell).
        natural = button.evaluate(
            "b => { const r = document.createRange(); r.selectNodeContents(b);"
            " const s = getComputedStyle(b);"
            " return r.getBoundingClientRect().width + ['paddingLeft', 'paddingRight',"
            " 'borderLeftWidth', 'borderRightWidth'].reduce((n, k) => n + parseFloat(s[k]), 0); }"
        )
        assert button.bounding_box()["width"] <= natural + 2, name
    if screen == "phone":  # a wider table scrolls in its box, not the page
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_matrix_cell_opens_its_detail_in_view(phone_page, owner, workspace):
    """On a phone the detail sits below the whole table: a tap brings it up."""
    traces = [TraceFactory(workspace=workspace, data=trace_data(n)) for n in range(12)]
    eval_set = create_eval_set(
        workspace=workspace, name="Phone", criteria="Answers.", trace_ids=[t.pk for t in traces]
    )
    eval = make_eval(eval_set, version=1)
    for trace in traces:
        record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="positive")
        record(eval, trace, passed=True)
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/matrix/")
    page.locator("button.cell").first.click()
    detail = page.get_by_test_id("cell-detail")
    expect(detail).to_contain_text("v1")
    expect(detail).to_be_in_viewport()


def test_a_traces_name_and_its_tags_are_each_a_fingertip_high(phone_page, owner, workspace):
    """Before: the name 16 px and the tag under it 18 px high, touching: a tap on one opened
    the other as often as not (WCAG 2.2's 24 px target size)."""
    TraceFactory(workspace=workspace, data=trace_data(1), tags=["prod"])
    page = phone_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/")
    row = page.locator("table.traces tbody tr").first
    name = row.locator("a.trace-name").bounding_box()
    tag = row.get_by_role("link", name="prod").bounding_box()

    assert name["height"] >= 24 and tag["height"] >= 24, (name, tag)
    assert tag["y"] >= name["y"] + name["height"]  # one under the other, not overlapping


def test_unbroken_text_in_every_field_wraps_on_every_page(phone_page, owner, workspace):
    """A trace, label and verdicts whose text has no spaces (a traceback, an id, Chinese,
    a line of emoji): each page that shows them still fits the phone. The comparison
    matrix's cell page let an eval's error widen it to 17,000 pixels."""
    data = trace_data(1)
    data.update(name="agent-" + "n" * 300, tags=["t" * 200], metadata={"k" * 200: "v" * 2000})
    data.update(input={"q": "x" * 3000, "ar": "مرحبا" * 600}, output="长" * 3000 + "🙂" * 500)
    for step in data["steps"]:
        step.update(name="tool_" + "z" * 300, output="o" * 3000, model="m" * 200)
        step["error"] = "e" * 2000 if step["type"] == "tool" else None
    trace = TraceFactory(
        workspace=workspace, data=data, name=data["name"][:255]
    )  # the column holds 255
    eval_set = create_eval_set(
        workspace=workspace, name="S", criteria="c" * 3000, trace_ids=[trace.pk]
    )
    record_feedback(eval_set=eval_set, trace=trace, user=owner, rating="negative", note="w" * 3000)
    v1 = make_eval(eval_set, version=1, status="active", agreement=0.5, labels_tested=1)
    record(v1, trace, True, reason="r" * 3000)
    v2 = make_eval(eval_set, version=2, parent=v1, agreement=0.5)
    record(v2, trace, None, reason="因为" * 1500, error="Traceback:" + "E" * 2000)
    page = phone_page(owner)
    wide = {}
    for path in (
        f"traces/{trace.pk}/",
        "traces/",
        f"traces/eval-sets/{eval_set.pk}/",
        f"traces/eval-sets/{eval_set.pk}/review/",
        f"traces/eval-sets/{eval_set.pk}/labels/",
        f"evals/sets/{eval_set.pk}/activity/",
        f"evals/sets/{eval_set.pk}/versions/",
        f"evals/sets/{eval_set.pk}/matrix/",
        f"evals/{v2.pk}/",
        f"evals/{v2.pk}/traces/{trace.pk}/",
        f"evals/{v2.pk}/compare/",
    ):
        page.goto(f"/w/{workspace.slug}/{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            wide[path] = width
    assert wide == {}
