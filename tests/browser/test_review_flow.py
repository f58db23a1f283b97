"""Label ten traces in under a minute: keyboard only, then with clicks; keys vs slow requests."""

import threading

import pytest
from playwright.sync_api import expect

from evals import collaboration
from tests.traces.factories import TraceFactory, trace_data
from traces import services as trace_services
from traces.models import Feedback
from traces.services import add_traces_to_eval_set, create_eval_set

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def review_set(workspace, owner):
    traces = [
        TraceFactory(
            workspace=workspace,
            data=trace_data(n, error="timeout" if n % 3 == 0 else None),
            has_error=n % 3 == 0,
        )
        for n in range(14)  # 12 good or bad labels, one skip and one neutral label to spare
    ]
    eval_set = create_eval_set(
        workspace=workspace,
        name="Support answers",
        criteria="The agent answers the question and uses the order tools.",
        created_by=owner,
    )
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    return eval_set


class Held:
    """Holds every server-side call to ``module.name`` until released: a slow request for
    real (the live server runs in this process), not a mocked one in the browser."""

    def __init__(self, monkeypatch, module, name):
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.calls = 0
        original = getattr(module, name)

        def held(*args, **kwargs):
            self.calls += 1
            self.arrived.set()
            self.released.wait(timeout=30)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, held)


@pytest.fixture
def hold(monkeypatch):
    holds = []

    def _hold(module, name):
        holds.append(Held(monkeypatch, module, name))
        return holds[-1]

    yield _hold
    for held in holds:  # a failed test must not leave a server thread waiting
        held.released.set()


def _open_review(page, eval_set):
    page.goto(f"/w/{eval_set.workspace.slug}/traces/eval-sets/{eval_set.pk}/review/")
    # The keys work once the card shows (test_a_key_labels_as_soon_as_the_card_shows).
    expect(page.get_by_test_id("review-card")).to_be_visible()
    expect(page.get_by_test_id("progress")).to_have_text(_progress(0))


def _progress(decided: int) -> str:
    """The progress line: only good and bad labels count toward the target."""
    if decided >= 10:
        return f"{decided} labelled good or bad (target 10 reached)"
    return f"{decided} trace{'' if decided == 1 else 's'} labelled good or bad, of the 10 targeted"


def _current_trace(page) -> str:
    return page.get_by_test_id("review-card").get_attribute("data-trace")


def test_label_ten_traces_with_the_keyboard(logged_in_page, owner, review_set):
    page = logged_in_page(owner)
    _open_review(page, review_set)
    expect(page.get_by_test_id("generate")).to_contain_text("10 more labels")
    keys = ["1", "2", "3", "ArrowRight", "ArrowLeft", "ArrowDown", "1", "2", "1"]
    decided = 0
    for key in keys:
        decided += key not in ("3", "ArrowDown")  # neutral labels do not count
        before = _current_trace(page)
        page.keyboard.press(key)
        # A neutral label leaves the count as it was: wait for the next card, not the count.
        expect(page.get_by_test_id("review-card")).not_to_have_attribute("data-trace", before)
        expect(page.get_by_test_id("progress")).to_have_text(_progress(decided))
    expect(page.get_by_test_id("not-counted")).to_have_text(
        "2 more traces have a neutral or tied label: not counted, "
        "the eval learns only from good and bad."
    )

    # Undo takes back the last label and shows that trace again.
    page.keyboard.press("u")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(6))
    expect(page.get_by_test_id("notice")).to_have_text("Label undone.")

    # A note, typed after `n`, goes with the next label; digits in the note don't label.
    undone = _current_trace(page)
    page.keyboard.press("n")
    page.keyboard.type("Answer 2 missed the order number")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(6))
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(7))
    note = Feedback.objects.get(trace_id=undone, user=owner)
    assert (note.rating, note.note) == ("negative", "Answer 2 missed the order number")

    # Skip moves on without a label.
    skipped = _current_trace(page)
    page.keyboard.press("s")
    expect(page.get_by_test_id("notice")).to_have_text("Skipped.")
    assert _current_trace(page) != skipped
    for decided in (8, 9, 10):
        page.keyboard.press("1")
        expect(page.get_by_test_id("progress")).to_have_text(_progress(decided))
    expect(page.get_by_test_id("generate")).to_have_attribute("data-ready", "true")
    expect(page.get_by_test_id("remaining")).to_have_count(0)
    assert Feedback.objects.filter(eval_set=review_set).count() == 12


def test_label_ten_traces_with_clicks(logged_in_page, owner, member, review_set):
    page = logged_in_page(owner)
    _open_review(page, review_set)
    buttons = ["rate-positive", "rate-negative", "rate-neutral"]
    decided = 0
    for done in range(1, 10):
        button = "rate-neutral" if done == 2 else buttons[done % 2]  # one neutral: not counted
        decided += button != "rate-neutral"
        before = _current_trace(page)
        page.get_by_test_id(button).click()
        expect(page.get_by_test_id("review-card")).not_to_have_attribute("data-trace", before)
        expect(page.get_by_test_id("progress")).to_have_text(_progress(decided))
    page.get_by_test_id("undo").click()
    expect(page.get_by_test_id("progress")).to_have_text(_progress(7))
    page.get_by_test_id("note").fill("Used the tool, then ignored its answer")
    page.get_by_test_id("rate-negative").click()
    expect(page.get_by_test_id("progress")).to_have_text(_progress(8))
    for decided in (9, 10):
        page.get_by_test_id("rate-positive").click()
        expect(page.get_by_test_id("progress")).to_have_text(_progress(decided))
    expect(page.get_by_test_id("generate")).to_have_attribute("data-ready", "true")
    assert Feedback.objects.filter(note="Used the tool, then ignored its answer").exists()

    # A second reviewer who disagrees sees the warning.
    first = Feedback.objects.filter(eval_set=review_set, user=owner).order_by("trace_id").first()
    other = logged_in_page(member)
    other.goto(
        f"/w/{review_set.workspace.slug}/traces/eval-sets/{review_set.pk}/review/?trace={first.trace_id}"
    )
    opposite = "rate-negative" if first.rating == "positive" else "rate-positive"
    other.get_by_test_id(opposite).click()
    expect(other.get_by_test_id("notice")).to_contain_text(
        "Another reviewer rated that trace differently"
    )
    expect(other.get_by_test_id("disagreement")).to_be_visible()


def test_a_key_labels_while_the_trace_page_loads_its_comments(
    logged_in_page, owner, review_set, hold
):
    # The trace page loads its comments by a request of its own; a key pressed while that
    # one is slow must label, not be swallowed as if a label were already on its way.
    comments = hold(collaboration, "comments_on")
    trace_id = review_set.traces.first().pk
    page = logged_in_page(owner)
    page.goto(f"/w/{review_set.workspace.slug}/traces/{trace_id}/")
    expect(page.get_by_test_id("label-here")).to_contain_text("Support answers")
    assert comments.arrived.wait(timeout=10), "the comments request never came"
    expect(page.locator("#comments")).to_have_text("Loading comments…")
    page.keyboard.press("2")
    expect(page.get_by_test_id("label-here")).to_contain_text("yours: ✗ bad")
    assert Feedback.objects.get(trace_id=trace_id, user=owner).rating == "negative"
    comments.released.set()
    expect(page.locator("#comments")).not_to_have_text("Loading comments…")


def test_a_double_press_records_one_label(logged_in_page, owner, review_set, hold):
    page = logged_in_page(owner)
    _open_review(page, review_set)
    first = _current_trace(page)
    posts = []
    page.on(
        "request", lambda request: posts.append(request.url) if request.method == "POST" else None
    )
    label = hold(trace_services, "record_feedback")
    page.keyboard.press("1")
    assert label.arrived.wait(timeout=10), "the label request never came"
    # Pressed while the first label is still on its way: none of them acts on the card
    # being labelled nor on the next one, which the reviewer has not seen yet.
    for key in ["1", "2", "s"]:
        page.keyboard.press(key)
    label.released.set()
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    assert _current_trace(page) != first
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    assert [url.split("/review/")[1] for url in posts] == [f"{first}/label/"]
    assert label.calls == 1
    assert list(Feedback.objects.filter(eval_set=review_set).values_list("trace_id", "rating")) == [
        (int(first), "positive")
    ]


def test_a_key_labels_as_soon_as_the_card_shows(logged_in_page, owner, review_set):
    # On a loaded machine the page shows before htmx has arrived; the keys must work from
    # then on (by a plain form post until htmx is there), not be dropped unseen.
    page = logged_in_page(owner)
    held = []
    page.route("**/htmx-*.js", lambda route: held.append(route))
    page.goto(
        f"/w/{review_set.workspace.slug}/traces/eval-sets/{review_set.pk}/review/",
        wait_until="commit",
    )
    expect(page.get_by_test_id("review-card")).to_be_visible()
    expect(page.get_by_test_id("progress")).to_have_text(_progress(0))
    first = _current_trace(page)
    page.keyboard.press("1")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    expect(page.get_by_test_id("notice")).to_have_text("Labelled good.")
    for route in held:
        route.continue_()
    assert list(Feedback.objects.filter(eval_set=review_set).values_list("trace_id", "rating")) == [
        (int(first), "positive")
    ]


def test_a_resized_note_box_labels_without_a_policy_violation(logged_in_page, owner, review_set):
    # Dragging the note box's corner gives it a style attribute; the swap of the next card
    # must not copy that attribute (the CSP refuses it; the fixture fails on a report).
    page = logged_in_page(owner)
    _open_review(page, review_set)
    page.get_by_test_id("note").evaluate("note => { note.style.height = '6rem'; }")
    page.keyboard.press("1")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    expect(page.get_by_test_id("notice")).to_have_text("Labelled good.")


def test_undo_gives_back_the_note_for_the_label_that_replaces_it(logged_in_page, owner, review_set):
    page = logged_in_page(owner)
    _open_review(page, review_set)
    noted = _current_trace(page)
    page.get_by_test_id("note").fill("Quoted a price it never looked up")
    page.get_by_test_id("rate-neutral").click()
    expect(page.get_by_test_id("progress")).to_have_text(_progress(0))
    expect(page.get_by_test_id("note")).to_have_value("")

    # Undone to change the rating: the trace comes back with its note still written.
    page.keyboard.press("u")
    expect(page.get_by_test_id("notice")).to_have_text("Label undone.")
    assert _current_trace(page) == noted
    expect(page.get_by_test_id("note")).to_have_value("Quoted a price it never looked up")
    page.keyboard.press("2")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    label = Feedback.objects.get(trace_id=noted, user=owner)
    assert (label.rating, label.note) == ("negative", "Quoted a price it never looked up")
    # The next trace starts with an empty note box.
    expect(page.get_by_test_id("note")).to_have_value("")


def _focused(page) -> dict:
    return page.evaluate(
        "() => { const el = document.activeElement, s = getComputedStyle(el);"
        " return {id: el.id, text: el.innerText.trim(),"
        " outline: s.outlineStyle + ' ' + s.outlineWidth}; }"
    )


def test_after_a_label_the_keyboard_goes_on_from_the_new_card_with_visible_focus(
    logged_in_page, owner, review_set
):
    """The new card had no tabindex: its focus() did nothing, and the next Tab went on from
    where the labelled card's button was (the page's footer). And Pico's focus ring, a pale
    tint, was next to invisible on the coloured rate buttons."""
    page = logged_in_page(owner)
    _open_review(page, review_set)

    page.keyboard.press("1")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    expect(page.get_by_test_id("review-card")).to_be_focused()
    page.keyboard.press("Tab")
    expect(
        page.get_by_role("link", name="Open full trace (opens in a new tab)", exact=True)
    ).to_be_focused()
    page.get_by_test_id("note").focus()
    page.keyboard.press("Tab")

    assert _focused(page) == {"id": "", "text": "✓ Good 1", "outline": "solid 2px"}


def test_a_refused_note_is_shown_on_the_card_with_the_note_kept(logged_in_page, owner, review_set):
    # The card answers a refused label with 400 and itself: htmx drops a 400 unless told
    # to swap it (base.html's htmx-config), and the reviewer saw nothing happen.
    page = logged_in_page(owner)
    _open_review(page, review_set)
    shown = _current_trace(page)
    too_long = "x" * 5001
    # The box stops typing at 5,000; a pasted or scripted note is checked by the server.
    page.get_by_test_id("note").evaluate(
        "(note, text) => { note.removeAttribute('maxlength'); note.value = text; }", too_long
    )

    page.get_by_test_id("rate-positive").click()

    expect(page.get_by_test_id("notice")).to_contain_text("The note was not saved")
    assert _current_trace(page) == shown
    expect(page.get_by_test_id("note")).to_have_value(too_long)
    assert not Feedback.objects.exists()


def test_a_reviewer_made_viewer_with_the_card_open_is_told_why_their_label_is_refused(
    logged_in_page, owner, member, review_set
):
    # htmx swaps in no 403 unless told to (base.html's htmx-config): the click did nothing.
    from workspaces.models import Membership
    from workspaces.services import change_role

    page = logged_in_page(member)
    _open_review(page, review_set)
    change_role(membership=Membership.objects.get(user=member), role="viewer")

    page.get_by_test_id("rate-positive").click()

    expect(page.get_by_test_id("forbidden")).to_contain_text("Your role here is Viewer.")
    assert not Feedback.objects.exists()


def test_a_label_that_fails_says_so_and_the_next_try_works(logged_in_page, owner, review_set):
    """A server error or a lost connection: htmx swaps nothing, so the page has to say it."""
    page = logged_in_page(owner)
    # One route for the whole test, set before the page opens, its answer switched here.
    # Switching interception on (page.route) or off (unroute) while the page runs is not
    # instant in Chromium: a key pressed at once, on a loaded machine, sent its label past
    # the route, straight to the server, which saved it (no 500, no "Could not reach").
    posts = {"answer": "pass"}

    def answer(route):
        if route.request.method != "POST" or posts["answer"] == "pass":
            route.continue_()
        elif posts["answer"] == "500":
            route.fulfill(status=500, body="Server Error")
        else:
            route.abort()

    page.route("**/review/**", answer)
    _open_review(page, review_set)
    first = _current_trace(page)

    posts["answer"] = "500"
    page.keyboard.press("1")
    alert = page.get_by_test_id("request-error")
    expect(alert).to_contain_text("error 500")
    expect(alert).to_have_attribute("role", "alert")
    assert _current_trace(page) == first

    posts["answer"] = "no connection"
    page.keyboard.press("1")
    expect(alert).to_contain_text("Could not reach iofold")

    posts["answer"] = "pass"
    page.keyboard.press("1")
    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    expect(alert).to_be_hidden()
    assert Feedback.objects.get(eval_set=review_set).trace_id == int(first)


def test_the_first_tab_offers_to_skip_to_the_card(logged_in_page, owner, review_set):
    """Before: the brand, ten workspace links and the account menu came first, thirteen Tabs
    on every page before the content."""
    page = logged_in_page(owner)
    _open_review(page, review_set)
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).not_to_be_in_viewport()  # out of sight until the keyboard reaches it

    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")

    breadcrumb = page.get_by_role("navigation", name="breadcrumb")
    expect(breadcrumb.get_by_role("link", name="Eval sets")).to_be_focused()


def test_a_screen_reader_hears_what_a_key_did_and_the_next_traces_name(
    logged_in_page, owner, review_set
):
    """Before: the card's notice came with the swap, a live region too new to be heard, and
    the focused card was a nameless article."""
    page = logged_in_page(owner)
    _open_review(page, review_set)
    said = page.get_by_role("status").filter(has_text="Labelled good.")

    page.keyboard.press("1")
    expect(said).to_have_count(1)
    expect(said).to_have_id("review-status")  # on the page since it loaded
    name = page.get_by_test_id("trace-name").inner_text()
    expect(page.get_by_role("article", name=name)).to_be_focused()

    page.keyboard.press("s")
    expect(page.get_by_test_id("review-status")).to_have_text("Skipped.")


def test_escape_leaves_the_note_for_the_card(logged_in_page, owner, review_set):
    """Before: Escape dropped the focus on the page itself, no ring anywhere, and the next
    Tab started from wherever Chromium guessed."""
    page = logged_in_page(owner)
    _open_review(page, review_set)
    shown = _current_trace(page)

    page.keyboard.press("n")
    page.keyboard.type("Cited the wrong order")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("review-card")).to_be_focused()
    page.keyboard.press("2")

    expect(page.get_by_test_id("progress")).to_have_text(_progress(1))
    label = Feedback.objects.get(trace_id=shown, user=owner)
    assert (label.rating, label.note) == ("negative", "Cited the wrong order")


def test_after_the_last_label_the_focus_is_on_all_caught_up(logged_in_page, owner, workspace):
    """Before: the card went and the focus with it, to nowhere; the next Tab began anywhere."""
    eval_set = create_eval_set(
        workspace=workspace,
        name="One",
        criteria="c",
        created_by=owner,
        target_labels=1,
        trace_ids=[TraceFactory(workspace=workspace).pk],
    )
    page = logged_in_page(owner)
    page.goto(f"/w/{workspace.slug}/traces/eval-sets/{eval_set.pk}/review/")
    expect(page.get_by_test_id("review-card")).to_be_visible()

    page.keyboard.press("1")

    expect(page.get_by_role("article", name="All caught up")).to_be_focused()
