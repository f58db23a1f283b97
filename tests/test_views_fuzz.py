"""Every HTML page and form action answers bad input with a 4xx, never a 5xx; a form
refused is shown again with a 400, not a 200.

The walk takes every URL pattern of the project (``get_resolver()``), less a short skip list,
and fills its path converters with the objects of one complete workspace (test_api's world,
plus runs, a generation, a template, a member, an invitation and a token), then with wrong
ids: 0, a number past any column, another workspace's object, another workspace's slug.
It acts as the workspace's owner, the member whose role reaches every view (a viewer's
writes stop at 403 before any form is read). It sends GETs with odd query parameters
(negative, non-numeric and huge pages, repeated parameters, very long strings, NUL, and
every filter of the page's GET forms set to each odd value), and POSTs: empty, then the
plausible form that the page, a page above it or the page FORM_PAGES names shows, with one
field at a time set to an odd value or sent twice, half of them as htmx requests (and the
plausible form itself last); and PATCH and DELETE. A method a view refuses (405) gets no
variations. A new URL pattern joins the fuzz by existing:
``test_every_url_pattern_is_fuzzed_or_skipped`` fails for a pattern whose path ids the fuzz
cannot fill, and for a skip that names no pattern. What it found is pinned at the end.
"""

import json
import re
import socket
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.forms import BaseForm as Form
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from evals.models import Comment, EvalRun, EvalTemplate, Generation
from integrations.models import UploadRun
from tests.factories import MembershipFactory, UserFactory
from tests.test_api import RAW_BODIES, make_world
from tests.test_tenancy import _invitation_pk, _template_version, _token_pk
from traces.models import EvalSet, LabelAssignment, ScoreImportRun, Trace
from workspaces.models import Invitation, digest_secret

# Route prefixes that the walk leaves alone, and why.
SKIPPED = {
    "admin/": "Django's admin: staff only, its own forms and its own login",
    "accounts/": "allauth's own views (not ours, namespaced accounts:, which are fuzzed); "
    "tests/accounts covers the flows the project configures",
    "api/": "the REST API: tests/test_api.py fuzzes every write of its schema and the webhook",
    "v1/traces": "the OTLP receiver: token-authenticated; tests/integrations/test_otlp fuzzes it",
}

# (namespace, the literal segment before the converter) -> the world's object it names.
# A pattern whose converter is not here fails the coverage test: add its object.
OBJECTS = {
    ("workspaces", "members"): "membership",
    ("workspaces", "invitations"): "invitation",
    ("workspaces", "tokens"): "token",
    ("integrations", "integrations"): "integration",
    ("integrations", "runs"): "sync_run",
    ("integrations", "uploads"): "upload_run",
    ("traces", "traces"): "trace",
    ("traces", "conversations"): "conversation",
    ("traces", "turns"): "turn",
    ("traces", "eval-sets"): "eval_set",
    ("traces", "labels"): "feedback",
    ("traces", "scores"): "score_import_run",
    ("traces", "deletions"): "deletion",
    ("traces", "review"): "trace",
    ("evals", "sets"): "eval_set",
    ("evals", "generations"): "generation",
    ("evals", "refinements"): "generation",
    ("evals", "evals"): "eval",
    ("evals", "traces"): "trace",
    ("evals", "runs"): "eval_run",
    ("evals", "gallery"): "template",
    ("evals", "versions"): "template_version",
    (None, "invitations"): "invitation_token",
}
CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


@dataclass(frozen=True)
class Pattern:
    name: str  # "namespace:name", or the route where the pattern has no name
    route: str
    namespace: str | None

    def __str__(self) -> str:
        return self.name

    def converters(self) -> list[tuple[str, str]]:
        """(kwarg, the object it names) for each converter but the workspace's slug."""
        found = []
        for match in CONVERTER.finditer(self.route):
            kwarg = match.group(2)
            if kwarg == "slug":
                continue
            segments = [s for s in self.route[: match.start()].split("/") if s]
            before = segments[-1] if segments else ""
            if before.startswith("<"):  # "<int:pk>/runs/<int:run_pk>": the literal counts
                before = ""
            found.append((kwarg, OBJECTS.get((self.namespace, before))))
        return found


def _walk(patterns, prefix="", namespace=None):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern), p.namespace or namespace)
        elif isinstance(p, URLPattern):
            route = prefix + str(p.pattern)
            name = f"{namespace}:{p.name}" if namespace and p.name else (p.name or route)
            yield Pattern(name, route, namespace)


ALL_PATTERNS = list(_walk(get_resolver().url_patterns))
FUZZED = [
    p for p in ALL_PATTERNS if p.namespace == "accounts" or not p.route.startswith(tuple(SKIPPED))
]
BY_NAME = {p.name: p for p in ALL_PATTERNS}


def test_every_url_pattern_is_fuzzed_or_skipped():
    unknown = {p.name: p.route for p in FUZZED if any(obj is None for _, obj in p.converters())}
    unused_skips = [s for s in SKIPPED if not any(p.route.startswith(s) for p in ALL_PATTERNS)]

    assert unknown == {}, "the fuzz does not know which object these path ids name: add them"
    assert unused_skips == []
    assert set(FORM_PAGES) | set(FORM_PAGES.values()) <= set(BY_NAME)
    assert len(FUZZED) >= 90, "fewer patterns than expected: is the walk broken?"


# --- the world --------------------------------------------------------------------------


def _objects(workspace, owner) -> dict[str, str]:
    """Build one complete workspace; return its objects' path values by kind."""
    world = make_world(workspace, owner)
    eval_run = EvalRun.objects.create(workspace=workspace, eval=world.eval, trigger="manual")
    generation = Generation.objects.create(
        workspace=workspace, eval_set=world.eval_set, parent=world.eval, provider="offline"
    )
    score_run = ScoreImportRun.objects.create(
        workspace=workspace,
        eval_set=world.eval_set,
        integration=world.integration,
        user=owner,
        score_name="correct",
        mapping="true=good",
    )
    upload_run = UploadRun.objects.create(
        workspace=workspace, filename="t.jsonl", path="/nonexistent"
    )
    member = MembershipFactory(workspace=workspace, user=UserFactory())
    invitation_pk = _invitation_pk(workspace)["pk"]
    template_version = _template_version(workspace)
    # The raw token is only in the email: give the invitation one the fuzz knows.
    token = f"fuzz-{workspace.slug}"
    Invitation.objects.filter(pk=invitation_pk).update(token_digest=digest_secret(token))
    ids = {
        "integration": world.integration.pk,
        "sync_run": world.run.pk,
        "upload_run": upload_run.pk,
        "trace": world.trace.pk,
        "conversation": world.conversation.pk,
        "turn": Trace.objects.filter(conversation=world.conversation).first().pk,
        "eval_set": world.eval_set.pk,
        "feedback": world.feedback.pk,
        "score_import_run": score_run.pk,
        "deletion": world.deletion.pk,
        "generation": generation.pk,
        "eval": world.eval.pk,
        "eval_run": eval_run.pk,
        "template": template_version.template_id,
        "template_version": template_version.pk,
        "membership": member.pk,
        "invitation": invitation_pk,
        "token": _token_pk(workspace)["pk"],
        "invitation_token": token,
    }
    return {kind: str(value) for kind, value in ids.items()}


@pytest.fixture(autouse=True)
def _no_name_lookups(monkeypatch):
    """Odd hosts typed in forms ("abc", "nan") resolve to nothing, without asking DNS: the
    fuzz sends nothing past 127.0.0.1."""
    real = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    client.raise_request_exception = False  # an exception is a 500 answer, to be reported
    return client


# --- what is sent -----------------------------------------------------------------------

HUGE = "9" * 30
# 9999-12-31: the last day a date holds (a filter "to" it added a day: OverflowError).
# http://[::1: urlsplit raises ValueError on an unclosed bracket.
ODD_VALUES = [
    *("", "-1", HUGE, "nan", "abc", "x" * 20_000, "a\x00b", "2026-13-45", "9999-12-31"),
    "http://[::1",
]
ODD_QUERIES = [
    {"page": "-1"},
    {"page": "abc"},
    {"page": HUGE},
    {"page": "0"},
    {"page": ["1", "2"]},
    {"q": "x" * 20_000},
    {"q": "a\x00b"},
    {"sort": "-nope"},
    {"status": "nope", "rating": "nope", "source": "nope", "eval_set": "abc"},
    {"limit": HUGE, "offset": "-5"},
]


class _Forms(HTMLParser):
    """The POST targets of a page, each with the fields it sends: (action, {field: value}).

    A target is a POST form, a button's ``formaction`` in it, or an element's ``hx-post``
    (with its ``hx-vals``, and its form's fields when it is inside one). The fields of its
    GET forms (filters) are in ``filters``.
    """

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, dict]] = []
        self.filters: set[str] = set()
        self._get = False  # whether the open form is a GET form
        self._fields: dict | None = None  # of the open form; filled as the parser goes
        self._select: str | None = None  # the open select, until its first option

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._fields = {}
            self._get = not (a.get("hx-post") or a.get("method", "").lower() == "post")
            if not self._get:
                self.forms.append((a.get("hx-post") or a.get("action", ""), self._fields))
            return
        fields = self._fields
        for target in (a.get("hx-post"), a.get("formaction")):
            if target:
                extra = json.loads(a["hx-vals"]) if a.get("hx-vals", "").startswith("{") else {}
                self.forms.append((target, _Merged(fields or {}, extra)))
        name = a.get("name")
        if fields is None:
            return
        if self._get and name:
            self.filters.add(name)
        if tag == "option" and self._select:
            fields[self._select], self._select = a.get("value", ""), None
        elif not name or name in fields or name == "csrfmiddlewaretoken":
            return
        elif tag == "select":
            fields[name], self._select = "", name
        elif tag in ("input", "textarea") and a.get("type") != "file":
            checkable = a.get("type") in ("checkbox", "radio")
            fields[name] = a.get("value", "on" if checkable else "")

    def handle_endtag(self, tag):
        if tag == "form":
            self._fields = None


class _Merged(dict):
    """A form's fields (read when the page is parsed) with an element's own values."""

    def __init__(self, fields: dict, extra: dict):
        super().__init__()
        self._fields, self._extra = fields, extra

    def resolved(self) -> dict:
        return {**self._fields, **{k: str(v) for k, v in self._extra.items()}}


# Forms shown on a page that is neither the action's own nor one above it.
FORM_PAGES = {
    "workspaces:delete": "workspaces:settings",
    "workspaces:leave": "workspaces:members",
    "workspaces:cancel_invitation": "workspaces:members",
    "integrations:test_new": "integrations:create",
    "traces:trace_assign": "traces:detail",
    "traces:review_label": "traces:detail",
    "evals:generate": "evals:generation",
    "evals:set_threshold": "evals:automation",
    "evals:use_template": "evals:template",
}


def _view_name(path: str) -> str | None:
    try:
        return resolve(path).view_name
    except Resolver404:
        return None


def _pages(pattern: "Pattern", url: str, workspace, objects) -> list[str]:
    """Where the forms posting to ``url`` may be: its own page, the pages above it, and
    the page FORM_PAGES names."""
    pages, path = [], url
    while path.count("/") > 2:
        pages.append(path)
        path = path.rstrip("/").rsplit("/", 1)[0] + "/"
    if pattern.name in FORM_PAGES:
        page = BY_NAME[FORM_PAGES[pattern.name]]
        pages.append(_url(page, _values(page, workspace, objects)))
    return pages


def _forms_for(client, pattern: "Pattern", pages: list[str]) -> list[dict]:
    """The plausible forms for ``pattern``: the first page's forms that post to it (to its
    own object or another of the same kind)."""
    for page in pages:
        response = client.get(page)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        parser = _Forms()
        parser.feed(response.content.decode())
        found = [
            fields.resolved() if isinstance(fields, _Merged) else fields
            for action, fields in parser.forms
            if _view_name(urlsplit(action).path or page) == pattern.name
        ]
        if found:
            return found[:2]
    return []


def _url(pattern: Pattern, values: dict[str, str]) -> str:
    route = pattern.route
    for match in reversed(list(CONVERTER.finditer(route))):
        kwarg = match.group(2)
        route = route[: match.start()] + values[kwarg] + route[match.end() :]
    return "/" + route


def _values(pattern: Pattern, workspace, objects: dict[str, str]) -> dict[str, str]:
    values = {"slug": workspace.slug}
    values.update({kwarg: objects[kind] for kwarg, kind in pattern.converters()})
    return values


def _wrong_urls(pattern: Pattern, workspace, objects, other_objects, other_workspace):
    """(what, url) with one path value at a time wrong."""
    right = _values(pattern, workspace, objects)
    for kwarg, kind in pattern.converters():
        for what, wrong in (("0", "0"), ("huge", HUGE), ("other's", other_objects[kind])):
            yield f"{kwarg}={what}", _url(pattern, {**right, kwarg: wrong})
    if "slug" in right:
        yield "other workspace", _url(pattern, {**right, "slug": other_workspace.slug})
        yield "no workspace", _url(pattern, {**right, "slug": "nope"})


# test_api's broken bodies that a form view may be sent: forms with invalid UTF-8 or a
# surrogate, multipart without a boundary or with garbage, plain text, truncated JSON.
RAW_FORMS = [
    (what, content_type, body)
    for what, content_type, body in RAW_BODIES
    if content_type.startswith(("application/x-www-form", "multipart", "text/plain"))
    or what == "truncated"
]


def _odd_filters(page) -> list[dict]:
    """Every filter of the page's GET forms at once, set to each odd value in turn."""
    if "html" not in page.get("Content-Type", ""):
        return []
    parser = _Forms()
    parser.feed(page.content.decode())
    return [dict.fromkeys(parser.filters, value) for value in ODD_VALUES if parser.filters]


def _odd_forms(plausible: dict):
    """(what, form): one field at a time odd, then the plausible form itself (last, as it
    may delete what the others need)."""
    fields = plausible or dict.fromkeys(("name", "eval_set", "rating"), "1")
    for field in fields:
        for value in ODD_VALUES:
            yield f"{field}={value[:12]!r}", {**plausible, field: value}
        yield f"{field} twice", {**plausible, field: ["1", "abc"]}
    yield "plausible form", plausible


def _refused(response) -> bool:
    """Whether the page shows a form sent and refused (bound, with errors)."""
    contexts = response.context or []
    return any(
        isinstance(value, Form) and value.is_bound and value.errors
        for context in (contexts if isinstance(contexts, list) else [contexts])
        for value in context.flatten().values()
    )


@pytest.mark.parametrize("pattern", FUZZED, ids=str)
def test_no_page_answers_a_5xx(pattern, owner_client, workspace, owner, other_workspace, outsider):
    objects = _objects(workspace, owner)
    other_objects = _objects(other_workspace, outsider)
    url = _url(pattern, _values(pattern, workspace, objects))
    sent, failures = 0, []

    def check(what, response):
        nonlocal sent
        sent += 1
        if response.status_code >= 500:
            failures.append(f"{what}: {response.status_code} {response.content[:300]!r}")
        elif what.startswith("POST") and response.status_code == 200 and _refused(response):
            failures.append(f"{what}: a refused form answered 200, not 400")
        return response.status_code

    # A method a view refuses (405) gets none of its variations.
    page = owner_client.get(url)
    takes_get = check("GET", page) != 405
    takes_post = check("POST empty", owner_client.post(url, {})) != 405
    for what, wrong in _wrong_urls(pattern, workspace, objects, other_objects, other_workspace):
        if takes_get:
            check(f"GET {what}", owner_client.get(wrong))
        if takes_post:
            check(f"POST {what}", owner_client.post(wrong, {}))
    if takes_get:
        for n, query in enumerate([*ODD_QUERIES, *_odd_filters(page)]):
            headers = {"HX-Request": "true"} if n % 2 else {}
            check(f"GET ?{str(query)[:40]}", owner_client.get(url, query, headers=headers))
    if takes_post:
        forms = _forms_for(owner_client, pattern, _pages(pattern, url, workspace, objects))
        for what, content_type, body in RAW_FORMS:
            check(f"POST {what}", owner_client.generic("POST", url, body, content_type))
        for plausible in forms or [{}]:
            for n, (what, data) in enumerate(_odd_forms(plausible)):
                headers = {"HX-Request": "true"} if n % 2 else {}
                check(f"POST {what}", owner_client.post(url, data, headers=headers))
    for method in ("patch", "delete"):
        check(method.upper(), getattr(owner_client, method)(url))

    shown = "\n".join(failures[:20])
    assert not failures, f"{pattern.route}: {len(failures)} of {sent} were 5xx:\n{shown}"


# --- what the fuzz found, pinned -----------------------------------------------------


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


def test_a_trace_id_past_any_row_is_reported_and_adds_nothing(owner_client, workspace, owner):
    """SQLite refused the query (OverflowError): a 500, from the page and the API alike."""
    world = make_world(workspace, owner)
    before = set(world.eval_set.traces.values_list("pk", flat=True))
    url = f"/w/{workspace.slug}/traces/add-to-eval-set/"

    page = owner_client.post(url, {"eval_set": world.eval_set.pk, "trace": [world.trace.pk, HUGE]})
    api = owner_client.post(
        f"/api/v1/eval-sets/{world.eval_set.pk}/traces/",
        {"trace_ids": [10**30]},
        content_type="application/json",
        headers={"X-Workspace": workspace.slug},
    )
    created = owner_client.post(
        "/api/v1/eval-sets/",
        {"name": "New", "criteria": "c", "trace_ids": [world.trace.pk, 2**63]},
        content_type="application/json",
        headers={"X-Workspace": workspace.slug},
    )

    assert page.status_code == 302
    assert _messages(page) == [f"Unknown trace id(s): {HUGE}."]
    assert (api.status_code, created.status_code) == (400, 400)
    assert set(world.eval_set.traces.values_list("pk", flat=True)) == before
    assert not EvalSet.objects.filter(name="New").exists()


def test_a_reviewer_id_past_any_row_is_reported_and_assigns_nothing(owner_client, workspace, owner):
    world = make_world(workspace, owner)
    url = f"/w/{workspace.slug}/traces/eval-sets/{world.eval_set.pk}/assign/"

    response = owner_client.post(url, {"reviewer": [owner.pk, HUGE], "agreement_target": "0"})

    assert response.status_code == 302
    assert _messages(response) == ["Pick reviewers among the workspace's members who can label."]
    assert not LabelAssignment.objects.exists()


def test_a_template_draft_with_a_name_too_long_is_reported_and_makes_nothing(
    owner_client, workspace
):
    """The eval set's model check raised past the view (ValidationError): a 500."""
    version = _template_version(workspace)
    url = f"/w/{workspace.slug}/evals/gallery/versions/{version.pk}/use/"

    response = owner_client.post(url, {"name": "x" * 201})

    assert response.status_code == 302
    assert _messages(response) == ["An eval set's name is at most 200 characters."]
    assert not EvalSet.objects.for_workspace(workspace).exists()


def test_a_nul_character_is_refused_or_dropped_and_stores_nothing(owner_client, workspace, owner):
    """PostgreSQL takes no NUL in a text column nor in a query: each of these was a 500."""
    world = make_world(workspace, owner)
    version = _template_version(workspace)
    base = f"/w/{workspace.slug}"
    posts = {
        f"{base}/evals/{world.eval.pk}/comments/": {"body": "a\x00b"},
        f"{base}/evals/traces/{world.trace.pk}/comments/": {"body": "a\x00b"},
        f"{base}/evals/gallery/versions/{version.pk}/use/": {"name": "a\x00b"},
        f"{base}/evals/{world.eval.pk}/publish/": {"name": "Shared", "description": "a\x00b"},
    }
    sets = EvalSet.objects.count()

    answers = {url: owner_client.post(url, data) for url, data in posts.items()}
    search = owner_client.get(f"{base}/traces/", {"q": "a\x00b"})

    assert {url: r.status_code for url, r in answers.items()} == dict.fromkeys(posts, 302)
    assert [_messages(r)[-1] for r in answers.values()] == [
        "A comment cannot contain a NUL character.",
        "A comment cannot contain a NUL character.",
        "An eval set's name cannot contain a NUL character.",
        "The name and description cannot contain a NUL character.",
    ]
    assert not Comment.objects.exists()
    assert EvalSet.objects.count() == sets
    assert not EvalTemplate.objects.filter(publisher=workspace).exists()
    assert search.status_code == 200  # the filter is dropped, as any that does not parse


def test_the_trace_list_drops_an_integration_filter_past_64_bits(owner_client, workspace, owner):
    """The foreign key filter (``integration_id=``) failed in SQLite: OverflowError, a 500."""
    world = make_world(workspace, owner)

    response = owner_client.get(f"/w/{workspace.slug}/traces/", {"integration": "9" * 30})

    assert response.status_code == 200
    assert world.trace in response.context["page"].traces
