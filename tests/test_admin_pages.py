"""The admin over a realistic installation: every page of every model loads, for a
superuser and for staff who may only view, in as many queries with more data, and never
shows a secret."""

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from tests.admin_world import build_workspace
from tests.factories import WorkspaceFactory
from workspaces.models import WorkspaceOwned

pytestmark = pytest.mark.django_db
MODELS = list(admin.site._registry)


def _url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def _changelist_pages(client, model) -> list[tuple[str, str, dict]]:
    """The list, a search, and each filter's first choice."""
    url = _url(model, "changelist")
    pages = [("list", url, {}), ("search", url, {"q": "acme"})]
    response = client.get(url)
    cl = response.context["cl"] if response.context and "cl" in response.context else None
    for spec in cl.filter_specs if cl else []:
        choices = [c["query_string"] for c in spec.choices(cl)][1:2]  # the first after "All"
        for query in choices:
            pages.append((f"filter {spec.title}", url + query, {}))
    return pages


def _object_of(model, workspace, users):
    if issubclass(model, WorkspaceOwned):
        return model._default_manager.filter(workspace=workspace).order_by("pk").first()
    if model._meta.label == "workspaces.Workspace":
        return workspace
    if model is User:
        return users[0]  # the owner, with labels, tokens and invitations
    return None


def _object_pages(model, obj) -> list[tuple[str, str, dict]]:
    if obj is None:
        return []
    return [(view, _url(model, view, obj.pk), {}) for view in ("change", "history", "delete")]


def _crawl(client, pages, secrets) -> dict:
    """GET each page; return {name: queries}, asserting no 500 and no secret shown."""
    counts = {}
    for name, url, query in pages:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, query)
        assert response.status_code in (200, 302, 403), (name, url, response.status_code)
        text = response.content.decode(errors="replace")
        assert [s for s in secrets if s in text] == [], (name, url)
        counts[name] = len(queries)
    return counts


def _all_pages(client, small, big):
    """Per model: its list pages, and each per-object page for a small and a big workspace."""
    lists, per_object = [], {"small": [], "big": []}
    for model in MODELS:
        label = model._meta.label
        lists += [(f"{label} {n}", u, q) for n, u, q in _changelist_pages(client, model)]
        for size, (workspace, users) in (("small", small), ("big", big)):
            obj = _object_of(model, workspace, users)
            per_object[size] += [(f"{label} {n}", u, q) for n, u, q in _object_pages(model, obj)]
        lists.append((f"{label} add", _url(model, "add"), {}))
    return lists, per_object


@pytest.fixture
def installation():
    secrets = []
    small_ws = WorkspaceFactory(slug="acme-small", name="Acme small")
    small = build_workspace(small_ws, traces=2, people=2)
    secrets += small["secrets"]
    return secrets, (small_ws, small["users"])


def _grow(secrets):
    big_ws = WorkspaceFactory(slug="acme-big", name="Acme big")
    big = build_workspace(big_ws, traces=8, people=4)
    secrets += big["secrets"]
    return big_ws, big["users"]


def test_every_page_costs_as_many_queries_with_more_data_and_shows_no_secret(client, installation):
    secrets, small = installation
    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    lists, _ = _all_pages(client, small, small)
    _crawl(client, lists, secrets)  # warm-up: content types, sessions
    before = _crawl(client, lists, secrets)

    big = _grow(secrets)
    lists, per_object = _all_pages(client, small, big)
    after = _crawl(client, lists, secrets)
    small_pages = _crawl(client, per_object["small"], secrets)
    big_pages = _crawl(client, per_object["big"], secrets)

    grew = {name: (before[name], n) for name, n in after.items() if n > before.get(name, n)}
    grew |= {name: (small_pages[name], n) for name, n in big_pages.items() if n > small_pages[name]}
    # Django's raw-id widget reads each member's email: one query a member, and teams are
    # small (the workspace page lists its members inline).
    grew.pop("workspaces.Workspace change")
    assert grew == {}


def test_staff_who_may_only_view_see_every_page_or_a_refusal_never_an_error(client, installation):
    from django.contrib.auth.models import Permission

    secrets, small = installation
    staff = User.objects.create_user("staff@example.com", "pw", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(staff)
    lists, per_object = _all_pages(client, small, small)
    _crawl(client, lists + per_object["small"], secrets)
    for model in MODELS:
        obj = _object_of(model, *small)
        if obj is not None:
            assert client.get(_url(model, "delete", obj.pk)).status_code == 403


def test_a_delete_confirmation_counts_what_goes_and_deletes_it(client, installation):
    from traces.models import EvalSet, Feedback

    _, (workspace, users) = installation
    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    eval_set = EvalSet.objects.get(workspace=workspace)
    labels = Feedback.objects.filter(eval_set=eval_set).count()
    page = client.get(_url(EvalSet, "delete", eval_set.pk))
    assert ("feedbacks", labels) in page.context["model_count"]
    assert "rated" not in page.content.decode()  # no label is named, one by one
    client.post(_url(EvalSet, "delete", eval_set.pk), {"post": "yes"})
    assert not Feedback.objects.filter(eval_set_id=eval_set.pk).exists()


def test_a_workspace_is_deleted_in_the_background_never_in_the_request(client, installation):
    _, (workspace, _) = installation
    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    assert client.get(_url(type(workspace), "delete", workspace.pk)).status_code == 403
    actions = client.get(_url(type(workspace), "changelist")).context["action_form"]
    assert [name for name, _ in actions.fields["action"].choices if name] == ["request_deletion"]


def _form_data(form) -> dict:
    """What the admin's change form would post unchanged."""
    from django.forms import MultiWidget

    data = {}
    for bound in form:
        value, widget = bound.value(), bound.field.widget
        if isinstance(widget, MultiWidget):
            for i, part in enumerate(widget.decompress(value)):
                data[f"{bound.html_name}_{i}"] = "" if part is None else part
        elif value is True:
            data[bound.html_name] = "on"
        elif value is not None and value is not False:
            data[bound.html_name] = value
    return data


def _crossing_cases():
    """(model, field) for every admin form link from a workspace's row to another row
    that belongs to a workspace, the workspace itself included."""
    from django.test import RequestFactory

    from workspaces.models import Workspace

    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True)
    cases = []
    for model, model_admin in admin.site._registry.items():
        if not issubclass(model, WorkspaceOwned) or not model_admin.has_change_permission(request):
            continue
        fields = model_admin.get_form(request).base_fields
        for name in fields:
            f = model._meta.get_field(name)
            if f.many_to_one and issubclass(f.related_model, WorkspaceOwned | Workspace):
                cases.append((model, name))
    return cases


@pytest.mark.parametrize("model,field", _crossing_cases(), ids=lambda x: getattr(x, "__name__", x))
def test_the_admin_refuses_a_link_to_another_workspaces_row(client, installation, model, field):
    """Every page scopes by a row's own workspace: a label of workspace A pointing at B's
    trace would show B's trace in A. The admin's forms refuse such a link, and keep a saved
    row in its workspace."""
    from django.test import RequestFactory

    _, (small, _) = installation
    other = WorkspaceFactory(slug="globex", name="Globex")
    build_workspace(other, traces=1, people=1)
    obj = model._default_manager.filter(workspace=small).order_by("pk").first()
    related = model._meta.get_field(field).related_model
    foreign = (
        other
        if related._meta.label == "workspaces.Workspace"
        else related._default_manager.filter(workspace=other).order_by("pk").first()
    )
    request = RequestFactory().get("/")
    request.user = User.objects.create_superuser("root@example.com", "pw")
    model_admin = admin.site._registry[model]
    form_class = model_admin.get_form(request, obj, change=True)
    if field == "workspace":  # a saved row stays where it is: its links would stay behind
        assert "workspace" not in form_class.base_fields
        return
    data = _form_data(form_class(instance=obj)) | {field: foreign.pk}

    form = form_class(data, instance=obj)

    assert not form.is_valid()
    assert "another workspace" in str(form.errors)


def test_lists_of_rows_with_a_trace_never_read_trace_payloads(client, installation):
    """A list of 100 labels or verdicts shows each trace's name: it reads no payload (up to
    megabytes each), nor the versions' code and prompts; the trace list neither."""
    secrets, _ = installation
    client.force_login(User.objects.create_superuser("root@example.com", "pw"))
    with_traces = {
        "traces.Trace",
        "traces.Feedback",
        "traces.EvalSetTrace",
        "evals.EvalExecution",
        "evals.Comment",
    }
    pages = [
        (model._meta.label, _url(model, "changelist"), {})
        for model in MODELS
        if model._meta.label in with_traces
    ]
    assert len(pages) == 5
    for name, url, query in pages:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url, query).status_code == 200
        read = [q["sql"] for q in queries if '"traces_trace"."data"' in q["sql"]]
        read += [q["sql"] for q in queries if '"evals_eval"."code"' in q["sql"]]
        assert read == [], name
