"""One vocabulary: every page says good/bad/neutral for labels and pass/fail for verdicts.

The walk opens every workspace page a member can GET (the tenancy matrix's cases, which a
new URL must join) in a workspace with labels, evals, verdicts and label changes, plus the
pages outside workspaces, and fails on any other word for a label or a verdict in the text
a person reads.
"""

import re
from html.parser import HTMLParser

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.evals.builders import labelled_set, make_eval, record
from tests.test_tenancy import UI_CASES
from traces import services
from traces.vocabulary import OTHER_VERDICT_WORDS

pytestmark = pytest.mark.django_db

WORDS = re.compile(r"\b(" + "|".join(re.escape(w) for w in OTHER_VERDICT_WORDS) + r")\b", re.I)
OUTSIDE_WORKSPACES = ["home", "workspaces:list", "api-docs"]


class _Text(HTMLParser):
    """The text a reader sees: content outside script/style, plus title and aria-label."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in ("title", "aria-label", "placeholder", "data-tooltip") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


def _populate(workspace, owner):
    eval_set, traces = labelled_set(workspace, good=3, bad=3, neutral=1, user=owner)
    v1 = make_eval(eval_set, version=1, status="active", agreement=0.8, labels_tested=6)
    for n, trace in enumerate(traces):
        record(v1, trace, n % 2 == 0, reason="looked at the answer")
    # The builder's notes say "positive because…": a reviewer's own words are not checked.
    eval_set.feedback.update(note="looked at the output")
    label = eval_set.feedback.first()
    services.edit_label(feedback=label, actor=owner, role="owner", rating="neutral", note="")
    return eval_set


def _workspace_get_patterns() -> set[str]:
    """Names of every URL under /w/<slug>/ (UI pages, not the API)."""
    names = set()

    def walk(patterns, prefix, namespace):
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = p.namespace or namespace
                walk(p.url_patterns, prefix + str(p.pattern), ns)
            elif isinstance(p, URLPattern) and p.name:
                route = prefix + str(p.pattern)
                if route.startswith("w/<slug:slug>/"):
                    names.add(f"{namespace}:{p.name}" if namespace else p.name)

    walk(get_resolver().url_patterns, "", None)
    return names


def test_every_workspace_page_is_in_the_walk():
    covered = {c.name for c in UI_CASES}
    assert _workspace_get_patterns() - covered == set()


def test_no_page_uses_another_word_for_a_label_or_a_verdict(client, workspace, owner):
    eval_set = _populate(workspace, owner)
    client.force_login(owner)
    found = {}

    def check(url):
        response = client.get(url, follow=True)
        assert response.status_code in (200, 400), url
        if "html" in response.get("Content-Type", ""):
            text = visible_text(response.content.decode())
            words = sorted({m.group(0).lower() for m in WORDS.finditer(text)})
            if words:
                found[url] = words

    for name in OUTSIDE_WORKSPACES:
        check(reverse(name))
    check(eval_set.get_absolute_url())
    for case in UI_CASES:
        if case.method != "get":
            continue
        # Each case builds its own objects (same names): roll them back after the page.
        with transaction.atomic():
            kwargs = case.kwargs(workspace)
            check(reverse(case.name, kwargs={"slug": workspace.slug, **kwargs}))
            transaction.set_rollback(True)
    assert found == {}


def test_eval_set_generation_and_matrix_pages_carry_their_help(client, workspace, owner):
    from tests.test_tenancy import _generation_pk

    eval_set = _populate(workspace, owner)
    client.force_login(owner)
    pages = {
        "eval_set": eval_set.get_absolute_url(),
        "generation": reverse(
            "evals:generation", kwargs={"slug": workspace.slug, **_generation_pk(workspace)}
        ),
        "matrix": reverse("evals:matrix", kwargs={"slug": workspace.slug, "pk": eval_set.pk}),
    }
    for topic, url in pages.items():
        html = client.get(url).content.decode()
        assert f'data-testid="help-{topic}"' in html, url
    assert "held-out labels" in client.get(pages["generation"]).content.decode()


def test_csv_exports_put_the_vocabulary_beside_the_stored_values(client, workspace, owner):
    """A person reads the CSV in a spreadsheet: the word columns say good/bad/neutral and
    pass/fail, and the stored columns keep what scripts already parse."""
    import csv
    import io

    eval_set = _populate(workspace, owner)
    client.force_login(owner)
    response = client.get(
        reverse("evals:matrix_csv", kwargs={"slug": workspace.slug, "pk": eval_set.pk})
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 7
    pairs = {(r["label"], r["label_word"]) for r in rows}
    assert pairs == {("positive", "good"), ("negative", "bad"), ("neutral", "neutral")}
    verdicts = {(r["v1_passed"], r["v1_verdict"]) for r in rows}
    assert verdicts == {("true", "pass"), ("false", "fail")}
    # Only the word columns are for a person; they never say another word for a verdict.
    words = " ".join(f"{r['label_word']} {r['v1_verdict']} {r['notes']}" for r in rows) + " ".join(
        rows[0].keys()
    )
    assert not WORDS.search(words), words
