"""Text stays readable on the app's own coloured boxes (WCAG AA: 4.5:1 for small text), and
the agreement boxes of two versions sit side by side at one size."""

import pytest
from playwright.sync_api import expect

from tests.evals.builders import make_eval
from tests.traces.factories import EvalSetFactory, TraceFactory, trace_data

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The contrast ratio of an element's text on its own background (the page's white below it).
CONTRAST = """el => {
  const rgba = c => {
    const p = c.match(/[\\d.]+/g).map(Number);
    return p.length > 3 ? p : [...p, 1];
  };
  const [br, bg, bb, ba] = rgba(getComputedStyle(el).backgroundColor);
  const back = [br, bg, bb].map(v => v * ba + 255 * (1 - ba));
  const text = rgba(getComputedStyle(el).color).slice(0, 3);
  const lum = c => c.map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const [a, b] = [lum(back), lum(text)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


def test_the_confusion_matrix_is_readable_in_its_darkest_cells(logged_in_page, owner, workspace):
    eval_set = EvalSetFactory(workspace=workspace)
    # Every cell at a different shade, the busiest two at the darkest.
    figures = {"tp": 40, "fn": 40, "fp": 20, "tn": 4, "labelled": 104, "accuracy": 0.42}
    eval = make_eval(eval_set, version=1, metrics={"training": figures, "heldout": None})
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/evals/{eval.pk}/")
    cells = page.locator(".confusion .cell")
    expect(cells).to_have_count(4)
    for index in range(4):
        cell = cells.nth(index)
        ratio = cell.evaluate(CONTRAST)
        assert ratio >= 4.5, (cell.get_attribute("class"), cell.inner_text(), round(ratio, 2))


def test_before_and_after_boxes_are_the_same_width(logged_in_page, owner, workspace):
    eval_set = EvalSetFactory(workspace=workspace)
    figures = {"tp": 3, "fn": 1, "fp": 0, "tn": 4, "labelled": 8, "accuracy": 0.875}
    v1 = make_eval(eval_set, version=1, metrics={"training": figures})
    v2 = make_eval(eval_set, version=2, parent=v1, metrics={"training": figures})
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/evals/{v2.pk}/compare/")
    before = page.locator("article", has=page.locator("header", has_text="v1")).filter(
        has=page.locator(".confusion")
    )
    after = page.locator("article", has=page.locator("header", has_text="v2")).filter(
        has=page.locator(".confusion")
    )
    expect(before).to_be_visible()
    expect(after).to_be_visible()
    assert abs(before.bounding_box()["width"] - after.bounding_box()["width"]) <= 2


def test_step_type_badges_are_readable(logged_in_page, owner, workspace):
    data = trace_data(1)
    data["steps"][1]["type"] = "retriever"
    trace = TraceFactory(workspace=workspace, data=data)
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/{trace.pk}/")
    for kind in ("agent", "retriever", "llm"):
        badge = page.locator(f".type.{kind}:visible").first
        expect(badge).to_be_visible()
        ratio = badge.evaluate(CONTRAST)
        assert ratio >= 4.5, (kind, round(ratio, 2))


def test_tag_links_are_readable_on_their_badge(logged_in_page, owner, workspace):
    TraceFactory(workspace=workspace, data=trace_data(1), tags=["prod"])
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/")
    tag = page.locator("a.badge", has_text="prod").first
    expect(tag).to_be_visible()
    assert tag.evaluate(CONTRAST) >= 4.5


def test_the_matrix_cells_of_a_version_that_never_judged_a_trace_are_readable(
    logged_in_page, owner, workspace
):
    """Before: their "—" was #aaa on white, 2.3:1."""
    from tests.evals.builders import labelled_set

    eval_set, _ = labelled_set(workspace, good=1, bad=1)
    make_eval(eval_set, version=1)  # never run: no verdict on either trace
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/evals/sets/{eval_set.pk}/matrix/")
    cells = page.locator('button.cell[data-state="missing"]')
    expect(cells).to_have_count(2)
    ratio = cells.first.evaluate(CONTRAST)
    assert ratio >= 4.5, round(ratio, 2)


# The same ratio, on the first background behind the element that is not transparent.
CONTRAST_ON_BACKDROP = CONTRAST.replace(
    "getComputedStyle(el).backgroundColor",
    "(() => { let box = el; while (box && /rgba\\(0, 0, 0, 0\\)|transparent/"
    ".test(getComputedStyle(box).backgroundColor)) box = box.parentElement;"
    " return box ? getComputedStyle(box).backgroundColor : 'rgb(255, 255, 255)'; })()",
)

CODE = """import re


def eval_fn(trace):
    status = int(trace.get("status") or 400)
    if re.search(r"cannot", str(trace.get("output"))) or status >= 500:
        return False, f"refused {status!r}"
    return True, "answered"
"""


def test_neutral_counts_legends_and_highlighted_code_are_readable(logged_in_page, owner, workspace):
    """Before: the neutral count 4.4:1 on the card's grey, the matrix legend's words 4.0:1 on
    green and 4.1:1 on yellow, numbers in highlighted code 2.8:1 and namespaces 3.7:1."""
    from tests.evals.builders import labelled_set

    eval_set, _ = labelled_set(workspace, good=1, bad=1, neutral=1)
    eval = make_eval(eval_set, version=1, code=CODE)
    page = logged_in_page(owner)
    low = {}
    for path, selector in [
        ("/traces/eval-sets/", ".split .neu"),
        (f"/evals/sets/{eval_set.pk}/matrix/", ".legend span"),
        (f"/evals/{eval.pk}/", "[data-testid=code] span[class]:not(.w)"),
    ]:
        page.goto(f"/w/{workspace.slug}{path}")
        texts = page.locator(selector)
        expect(texts.first).to_be_visible()
        for index in range(texts.count()):
            text = texts.nth(index)
            ratio = text.evaluate(CONTRAST_ON_BACKDROP)
            if ratio < 4.5:
                low[f"{path} {text.get_attribute('class')} {text.inner_text()!r}"] = round(ratio, 2)

    assert low == {}
