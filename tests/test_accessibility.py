"""Every HTML page passes the checks a screen reader or keyboard user needs, without a browser.

The pages are those the fuzz walks (tests/test_views_fuzz.py: every URL pattern, filled with
one complete workspace's objects), fetched with GET as the workspace's owner; the same pages
of an empty workspace (empty states); and the signed-out account and error pages. Only full
pages: an htmx fragment is checked within the page that includes it. On each page:

- every form control a user fills (input but hidden/submit/button/image/reset, select,
  textarea) has an accessible name: a ``<label for>``, a wrapping ``<label>``,
  ``aria-label`` or ``aria-labelledby``;
- every button and link has text or an ``aria-label``: an icon alone says nothing aloud;
- every ``<img>`` has ``alt`` (empty for decoration);
- one ``<h1>``, a non-empty ``<title>``, ``<html lang>``;
- no id twice (``label for`` and ``aria-*`` point at the first one only);
- no positive ``tabindex`` (it reorders the tab sequence away from the reading order);
- headings go down one level at a time (an <h5> under the <h1> leaves a screen reader's
  list of headings with three levels missing, as if part of the page were lost);
- no empty table header (a column read aloud as nothing: name it, visually hidden if need be);
- no help text (``<small>``, ``.help``, ``.muted``, ``.helptext``) inside a ``<label>``: it
  becomes part of the field's name ("Name Your team or product…"); help in a form is
  referenced by an ``aria-describedby``, so it is read after the name instead;
- no keyboard shortcut (``<kbd>``) inside a ``<label>``: the note box was named "Note n";
  the hint sits beside the label, tied to the field by ``aria-describedby``;
- every ``<progress>`` is named (its text sits beside it, which a screen reader does not tie
  to the bar);
- every link that opens a new tab says so ("(opens in a new tab)", visually hidden) and has
  ``rel="noopener"``;
- every scroll box (``<pre>``, ``.table-wrap``, ``.code-wrap``, ``.code-block``,
  ``.scroll-x``) is a named, focusable region: the keyboard can scroll it in every browser.
"""

import re
from html.parser import HTMLParser

import pytest

from tests.test_views_fuzz import FUZZED, _objects, _url, _values

# Inputs a user does not fill in, or whose value is their name.
UNNAMED_INPUTS = {"hidden", "submit", "button", "image", "reset"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}
HELP_CLASSES = {"help", "muted", "helptext"}
SCROLL_CLASSES = {"table-wrap", "code-wrap", "code-block", "scroll-x"}
NEW_TAB = "(opens in a new tab)"
# Where Pico puts a field's help (a <small> right after it): after these elements.
FIELDS = {"input", "select", "textarea", "label", "fieldset"}


class _Audit(HTMLParser):
    """Collects one page's problems in ``problems``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.ids: dict[str, int] = {}
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict, bool]] = []  # (tag, attrs, inside a <label>)
        self.h1 = 0
        self.title: str | None = None
        self.lang = None
        self._labels = 0  # open <label> elements
        self.named = 0  # buttons and links checked
        self._named: list[dict] = []  # open buttons/links: {"tag", "attrs", "text"}
        self._in_title = False
        self.heading = 0  # the last heading's level
        self._th: list[str] | None = None  # the open <th>'s text
        self.described: set[str] = set()  # ids some aria-describedby points at
        self.form_help: list[tuple[str, dict]] = []  # help text in forms: (tag, attrs)
        self.labelledby: list[tuple[str, dict]] = []  # (id, attrs of the named element)
        self._forms = 0  # open <form> elements
        self._previous: str | None = None  # the element just before, at the same level
        self._regions: list[list] = []  # open scroll regions: [tag, how many such tags open]

    def handle_starttag(self, tag, attrs):
        a = {k: v if v is not None else "" for k, v in attrs}
        if self._th is not None and a.get("aria-label"):  # a header's named control names it
            self._th.append(a["aria-label"])
        if "id" in a:
            self.ids[a["id"]] = self.ids.get(a["id"], 0) + 1
        classes = set(a.get("class", "").split())
        if self._labels and (tag == "small" or classes & HELP_CLASSES):
            self.problems.append(f"help text inside a <label>: <{tag} {_short(a)}>")
        if self._labels and tag == "kbd":
            self.problems.append(f"keyboard shortcut inside a <label>: <kbd {_short(a)}>")
        if self._forms and self._previous in FIELDS and (tag == "small" or "helptext" in classes):
            self.form_help.append((tag, a))
        self._previous = tag if tag in VOID else None
        self.described.update(a.get("aria-describedby", "").split())
        self.labelledby += [(i, a) for i in a.get("aria-labelledby", "").split()]
        if tag == "form":
            self._forms += 1
        elif tag == "progress" and not _has_name(a):
            self.problems.append(f"progress without a name: <progress {_short(a)}>")
        elif tag == "a" and a.get("target") == "_blank" and "noopener" not in a.get("rel", ""):
            self.problems.append(f"new tab without rel=noopener: <a {_short(a)}>")
        for region in self._regions:
            region[1] += region[0] == tag
        if (tag == "pre" or classes & SCROLL_CLASSES) and not self._regions:
            if not (a.get("tabindex") == "0" and a.get("role") == "region" and _has_name(a)):
                self.problems.append(
                    f"scroll box not a named focusable region: <{tag} {_short(a)}>"
                )
            self._regions.append([tag, 1])
        tabindex = a.get("tabindex", "").strip()
        if tabindex.lstrip("-").isdigit() and int(tabindex) > 0:
            self.problems.append(f"positive tabindex: <{tag} {_short(a)}>")
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "title":
            self._in_title, self.title = True, ""
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            level = int(tag[1])
            self.h1 += level == 1
            if level > self.heading + 1:
                self.problems.append(f"<{tag}> after <h{self.heading}>: <{tag} {_short(a)}>")
            self.heading = level
        elif tag == "th":
            self._th = []
        elif tag == "label":
            self._labels += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        elif tag == "img":
            if "alt" not in a:
                self.problems.append(f"img without alt: <img {_short(a)}>")
            for named in self._named:  # an image's alt names the link it is in
                named["text"] += a.get("alt", "")
        kind = a.get("type", "text").lower() if tag == "input" else tag
        if tag in ("input", "select", "textarea") and kind not in UNNAMED_INPUTS:
            self.controls.append((tag, a, self._labels > 0))
        if tag == "button" or (tag == "a" and "href" in a):
            self._named.append({"tag": tag, "attrs": a, "text": ""})

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        self._previous = tag
        if tag == "title":
            self._in_title = False
        elif tag == "th" and self._th is not None:
            if not "".join(self._th).strip():
                self.problems.append("empty <th>")
            self._th = None
        elif tag == "label":
            self._labels = max(0, self._labels - 1)
        elif tag == "form":
            self._forms = max(0, self._forms - 1)
        if self._regions and self._regions[-1][0] == tag:
            self._regions[-1][1] -= 1
            if not self._regions[-1][1]:
                self._regions.pop()
        if tag in ("a", "button") and self._named and self._named[-1]["tag"] == tag:
            named = self._named.pop()
            self.named += 1
            a = named["attrs"]
            # "×" or "↗" alone is read as "multiplication sign" or nothing at all.
            if not (re.search(r"\w", named["text"]) or _has_name(a)):
                self.problems.append(f"{tag} without text or aria-label: <{tag} {_short(a)}>")
            if a.get("target") == "_blank" and NEW_TAB not in named["text"]:
                self.problems.append(f"new tab not announced: <a {_short(a)}>")

    def handle_data(self, data):
        if data.strip():
            self._previous = None
        if self._in_title:
            self.title += data
        if self._th is not None:
            self._th.append(data)
        for named in self._named:
            named["text"] += data

    def finish(self) -> list[str]:
        for tag, a, wrapped in self.controls:
            if not (wrapped or a.get("id", "") in self.label_for or _has_name(a)):
                self.problems.append(f"{tag} without a label: <{tag} {_short(a)}>")
        if self.h1 != 1:
            self.problems.append(f"{self.h1} <h1> (one expected)")
        if not (self.title or "").strip():
            self.problems.append("no <title>")
        elif "\n" in self.title.strip() or len(self.title) > 200:
            # A tab, a bookmark and a screen reader's first words: one short line.
            self.problems.append(f"a <title> of more than a title: {self.title.strip()[:60]!r}")
        if not self.lang:
            self.problems.append("no <html lang>")
        self.problems += [f"id {i!r} {n} times" for i, n in self.ids.items() if n > 1]
        for tag, a in self.form_help:
            if a.get("id", "") not in self.described:
                self.problems.append(
                    f"help text no aria-describedby points at: <{tag} {_short(a)}>"
                )
        for i, a in self.labelledby:
            if i not in self.ids:
                self.problems.append(f"aria-labelledby points at no element: {i!r} ({_short(a)})")
        return self.problems


def _has_name(a: dict) -> bool:
    # Not ``title``: a tooltip, read by some screen readers only, and never on touch screens.
    return any(a.get(k, "").strip() for k in ("aria-label", "aria-labelledby"))


def _short(a: dict) -> str:
    keep = ("id", "name", "type", "class", "href", "src", "hx-post", "hx-get")
    return " ".join(f'{k}="{a[k][:60]}"' for k in keep if k in a)


def audit(html: str, seen: dict | None = None) -> list[str]:
    """The page's problems; ``seen`` counts the controls and buttons/links it checked."""
    parser = _Audit()
    parser.feed(html)
    parser.close()
    if seen is not None:
        seen["controls"] = seen.get("controls", 0) + len(parser.controls)
        seen["named"] = seen.get("named", 0) + parser.named
    return parser.finish()


def _html(response) -> bool:
    return "text/html" in response.get("Content-Type", "")


def _is_full_page(html: str) -> bool:
    # A partial (an htmx fragment, a chart's <svg>) is checked within the page that shows it.
    return "<html" in html[:500].lower()


# --- the checker finds what it should --------------------------------------------------


def test_the_audit_reports_each_kind_of_problem():
    page = """<!doctype html><html><head><title> </title></head><body>
      <h1>A</h1><h1>B</h1>
      <input name="q"><select name="s"></select><textarea name="t"></textarea>
      <button type="button"><svg></svg></button><a href="/x"> </a><button>×</button>
      <img src="a.png"><div id="d"></div><span id="d"></span><a href="/y" tabindex="2">y</a>
      <h4>Comments</h4><table><tr><th> </th><th>Name</th></tr></table>
    </body></html>"""

    problems = audit(page)

    assert len(problems) == 14, problems
    assert "<h4> after <h1>: <h4 >" in problems and "empty <th>" in problems
    assert any("2 <h1>" in p for p in problems)
    assert "no <title>" in problems and "no <html lang>" in problems
    assert "id 'd' 2 times" in problems
    assert sum("without a label" in p for p in problems) == 3


def test_the_audit_reports_a_title_that_holds_more_than_a_title():
    page = """<!doctype html><html lang="en"><head><title>Agents · Team
      <article><header>Response content</header><p>With the Agents SDK...</p></article>
    </title></head><body><h1>H</h1></body></html>"""

    assert any(p.startswith("a <title> of more than a title") for p in audit(page))


def test_the_audit_takes_each_way_of_naming():
    page = """<!doctype html><html lang="en"><head><title>T</title></head><body><h1>H</h1>
      <label for="q">Search</label><input id="q" name="q">
      <label>Sort <select name="s"></select></label>
      <textarea name="t" aria-label="Note"></textarea><input type="hidden" name="h">
      <span id="n">Name</span><input name="n" aria-labelledby="n"><input type="submit">
      <button aria-label="Close">×</button><a href="/x"><img src="i.svg" alt="Home"></a>
      <img src="deco.svg" alt=""><a href="/y" tabindex="0">y</a><a href="/z" tabindex="-1">z</a>
      <h2>Part</h2><h3>Detail</h3><h2>Next</h2><table><tr>
      <th><input type="checkbox" aria-label="Select all"></th>
      <th><span class="visually-hidden">Actions</span></th></tr></table>
    </body></html>"""

    assert audit(page) == []


PAGE = """<!doctype html><html lang="en"><head><title>T</title></head><body><h1>H</h1>
  %s</body></html>"""


def test_the_audit_reports_help_progress_new_tabs_and_scroll_boxes():
    page = (
        PAGE
        % """<form>
      <label for="n">Name <small>Your team or product</small></label><input id="n" name="n">
      <label>Idle <input name="i"> <span class="muted">minutes</span></label>
      <input name="q" aria-label="Query"><small>What to look for</small>
      <label for="t">Note <kbd>n</kbd></label><textarea id="t" name="t"></textarea>
      </form>
      <progress value="1" max="2"></progress><span id="p">Half</span>
      <progress aria-labelledby="gone"></progress>
      <a href="/t" target="_blank" rel="noopener">Open full trace ↗</a>
      <a href="/u" target="_blank">Open <span class="visually-hidden">(opens in a new tab)</span>
      </a>
      <pre>code</pre><div class="table-wrap" tabindex="0" role="region"><table></table></div>"""
    )

    problems = audit(page)

    assert sum("help text inside a <label>" in p for p in problems) == 2, problems
    assert problems.count("keyboard shortcut inside a <label>: <kbd >") == 1
    assert problems.count("help text no aria-describedby points at: <small >") == 1
    assert problems.count("progress without a name: <progress >") == 1
    assert "aria-labelledby points at no element: 'gone' ()" in problems
    assert 'new tab not announced: <a href="/t">' in problems
    assert 'new tab without rel=noopener: <a href="/u">' in problems
    assert sum("scroll box not a named focusable region" in p for p in problems) == 2
    assert len(problems) == 10, problems


def test_the_audit_takes_help_progress_new_tabs_and_scroll_boxes_done_right():
    page = (
        PAGE
        % """<form>
      <label for="n">Name</label><input id="n" name="n" aria-describedby="n-help">
      <small id="n-help">Your team or product</small>
      <label><input type="checkbox" name="c" aria-describedby="c-help"> Send</label>
      <small id="c-help">As scores</small>
      <label for="t">Note</label> <kbd id="t-key">n</kbd>
      <textarea id="t" name="t" aria-describedby="t-key"></textarea>
      <table><tr><th>When <small class="muted">(UTC)</small></th></tr></table></form>
      <progress value="1" max="2" aria-labelledby="p"></progress><span id="p">Half</span>
      <progress aria-label="Syncing"></progress>
      <a href="/t" target="_blank" rel="noopener">Open
        <span class="visually-hidden">(opens in a new tab)</span></a>
      <pre tabindex="0" role="region" aria-label="Example">code</pre>
      <div class="code-wrap" tabindex="0" role="region" aria-label="Code">
        <div><pre>1</pre></div></div>"""
    )

    assert audit(page) == []


# --- every page -----------------------------------------------------------------------


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def _audit_pages(client, urls, min_pages: int) -> dict:
    """Audit every full HTML page among ``urls``; fail listing each page's problems.
    Return what was checked (pages, controls, buttons and links)."""
    seen, problems = {"pages": 0}, {}
    for url in urls:
        response = client.get(url)
        html = response.content.decode() if _html(response) else ""
        if not _is_full_page(html):
            continue
        seen["pages"] += 1
        if found := audit(html, seen):
            problems[url] = found

    assert seen["pages"] >= min_pages, f"fewer pages than expected: is the walk broken? {seen}"
    shown = "\n".join(f"{url}: {p}" for url, found in problems.items() for p in found)
    assert problems == {}, f"{len(problems)} of {seen['pages']} pages:\n{shown}"
    return seen


def test_every_page_the_owner_sees_is_accessible(owner_client, workspace, owner):
    objects = _objects(workspace, owner)
    urls = [_url(p, _values(p, workspace, objects)) for p in FUZZED]

    seen = _audit_pages(owner_client, urls, min_pages=40)

    assert seen["controls"] >= 100 and seen["named"] >= 500, f"too few elements checked: {seen}"


def test_every_page_of_an_empty_workspace_is_accessible(owner_client, workspace):
    """A new workspace's pages show their empty states and first steps instead."""
    # A page of an object is left out: an empty workspace has none.
    urls = [_url(p, _values(p, workspace, {})) for p in FUZZED if not p.converters()]

    _audit_pages(owner_client, urls, min_pages=15)


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/login/",
        "/accounts/signup/",
        "/accounts/password/reset/",
        "/accounts/password/reset/done/",
        "/invitations/nope/",
        "/no-such-page/",
    ],
)
def test_signed_out_pages_are_accessible(client, db, url):
    response = client.get(url)

    assert _is_full_page(response.content.decode())
    assert audit(response.content.decode()) == []
