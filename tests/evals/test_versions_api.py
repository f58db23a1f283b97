"""The management API: lineage, activation and rollback, edits, tests, diffs, exports,
the comparison matrix, cells and refinement."""

import datetime as dt
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from evals.execution.runs import execute_run
from evals.generation.worker import run_generation
from evals.models import Eval, EvalRun, Generation
from tests.evals.builders import ALWAYS_PASS_CODE, REFUSAL_CODE, labelled_set, make_eval, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(workspace, owner):
    """v1 (active) judges refusals right; v2, refined from it, passes everything."""
    eval_set, traces = labelled_set(workspace, good=3, bad=3, user=owner)
    v1 = make_eval(eval_set, version=1, status="active", agreement=1.0)
    v2 = make_eval(eval_set, version=2, parent=v1, code=ALWAYS_PASS_CODE, agreement=0.5)
    for t in traces:
        record(v1, t, "cannot" not in t.data["output"])
        record(v2, t, True, reason="Looks fine")
    return eval_set, traces, v1, v2


@pytest.fixture
def api(api_client, owner, workspace):
    api_client.force_login(owner)

    def call(method, name, data=None, **kwargs):
        url = reverse(name, kwargs=kwargs)
        headers = {"X-Workspace": workspace.slug}
        if method == "get":
            return api_client.get(url, data, headers=headers)
        return getattr(api_client, method)(url, data, format="json", headers=headers)

    return call


def test_versions_list_lineage_newest_first(api, versions):
    eval_set, _, v1, v2 = versions
    v3 = make_eval(eval_set, version=3, parent=v2)

    body = api("get", "api-eval-set-versions", pk=eval_set.pk).json()

    assert body["active"] == v1.pk
    assert [(v["version"], v["parent_version"], v["depth"]) for v in body["versions"]] == [
        (3, 2, 2),
        (2, 1, 1),
        (1, None, 0),
    ]
    assert body["versions"][0]["id"] == v3.pk


def test_activate_then_roll_back(api, versions):
    _, _, v1, v2 = versions

    deployed = api("post", "api-eval-activate", pk=v2.pk).json()
    rolled = api("post", "api-eval-activate", pk=v1.pk).json()

    assert (deployed["eval"]["status"], deployed["previous_active"], deployed["rollback"]) == (
        "active",
        v1.pk,
        False,
    )
    assert (rolled["eval"]["id"], rolled["previous_active"], rolled["rollback"]) == (
        v1.pk,
        v2.pk,
        True,
    )
    assert dict(Eval.objects.values_list("version", "status")) == {1: "active", 2: "draft"}


def test_archive_and_restore(api, versions):
    _, _, v1, _ = versions

    archived = api("post", "api-eval-archive", pk=v1.pk).json()
    assert archived["status"] == "archived"
    assert not Eval.objects.filter(status="active").exists()
    assert api("post", "api-eval-restore", pk=v1.pk).json()["status"] == "draft"


def test_edit_with_problems_is_a_400_with_line_numbers_and_saves_nothing(api, versions):
    _, _, _, v2 = versions
    code = "def eval_fn(trace):\n    import os\n    return True, 'x'\n"

    response = api("post", "api-eval-edit", {"code": code}, pk=v2.pk)

    assert response.status_code == 400
    problems = response.json()["problems"]
    assert problems and problems[0]["line"] == 2
    assert Eval.objects.count() == 2


def test_edit_saves_a_child_version_whose_test_run_remeasures_it(api, versions):
    eval_set, _, _, v2 = versions

    response = api(
        "post", "api-eval-edit", {"code": REFUSAL_CODE, "description": "Back to refusals"}, pk=v2.pk
    )

    assert response.status_code == 201, response.content
    body = response.json()
    edited = Eval.objects.get(pk=body["eval"]["id"])
    assert (edited.version, edited.parent, edited.origin, edited.status) == (
        3,
        v2,
        "edited",
        "draft",
    )
    assert body["run"]["status"] == "queued" and body["run"]["total"] == 6
    # The worker's run re-measures the version; nobody polls the page.
    execute_run(run_id=body["run"]["id"])
    polled = api("get", "api-eval-run-detail", pk=body["run"]["id"]).json()
    assert (polled["status"], polled["done"], polled["agreement"]) == ("succeeded", 6, 1.0)
    edited.refresh_from_db()
    assert edited.labels_tested == 6


def test_unchanged_code_is_a_400(api, versions):
    _, _, _, v2 = versions
    response = api("post", "api-eval-edit", {"code": ALWAYS_PASS_CODE}, pk=v2.pk)
    assert response.status_code == 400 and "unchanged" in response.json()["detail"]


def test_test_again_runs_on_the_current_labels_and_remeasures(api, versions, workspace, owner):
    eval_set, traces, _, v2 = versions
    assert v2.labels_tested == 0

    started = api("post", "api-eval-test", pk=v2.pk)

    assert started.status_code == 202
    run = started.json()
    assert (run["trigger"], run["status"], run["total"]) == ("manual", "queued", 6)
    execute_run(run_id=run["id"])
    v2.refresh_from_db()
    # Passing everything agrees with the 3 good labels only.
    assert (v2.agreement, v2.labels_tested) == (0.5, 6)
    assert v2.metrics["training"]["fp"] == 3


def test_test_again_twice_is_one_run(api, versions, workspace, owner):
    """A double click, a second tab or a retried request while the run is queued or
    running gets that run back, not a second run over the same traces."""
    *_, v2 = versions

    first = api("post", "api-eval-test", pk=v2.pk).json()
    second = api("post", "api-eval-test", pk=v2.pk).json()

    assert second["id"] == first["id"]
    assert EvalRun.objects.filter(eval=v2).count() == 1
    execute_run(run_id=first["id"])
    third = api("post", "api-eval-test", pk=v2.pk).json()  # finished: a new one may start
    assert third["id"] != first["id"]


def test_test_again_without_labels_is_a_400(api, workspace, owner):
    eval_set, _ = labelled_set(workspace, good=0, bad=0, user=owner)
    v1 = make_eval(eval_set, version=1)
    response = api("post", "api-eval-test", pk=v1.pk)
    assert response.status_code == 400 and "no labelled traces" in response.json()["detail"]
    assert not EvalRun.objects.exists()


def test_diff_between_versions(api, versions):
    eval_set, *_ = versions

    body = api("get", "api-eval-set-diff", pk=eval_set.pk).json()
    backwards = api("get", "api-eval-set-diff", {"a": 2, "b": 1}, pk=eval_set.pk).json()

    assert (body["a"]["version"], body["b"]["version"], body["same"]) == (1, 2, False)
    assert '-    if "cannot" in output:' in body["unified"]
    assert '+    return True, "Looks fine"' in body["unified"]
    assert '+    if "cannot" in output:' in backwards["unified"]


def test_diff_of_a_missing_version_is_a_404(api, api_client, versions, workspace):
    eval_set, *_ = versions
    url = reverse("api-eval-set-diff", kwargs={"pk": eval_set.pk})
    response = api_client.get(url, {"a": 1, "b": 9}, headers={"X-Workspace": workspace.slug})
    assert response.status_code == 404


@pytest.mark.parametrize("version", ["\u00b2", "1\u00b2", "x", "9" * 5000])
def test_diff_of_a_version_that_is_no_number_is_a_400(api, versions, version):
    """ "²" is a digit to ``str.isdigit`` but not to ``int``: it was a 500."""
    eval_set, *_ = versions

    response = api("get", "api-eval-set-diff", {"a": version, "b": 2}, pk=eval_set.pk)

    assert (response.status_code, response.json()) == (
        400,
        {"detail": "a and b are version numbers."},
    )


def test_export_script_and_eval_set(api, versions, tmp_path):
    eval_set, traces, v1, _ = versions

    script = api("get", "api-eval-export", pk=v1.pk)
    dump = api("get", "api-eval-set-export", pk=eval_set.pk)

    assert script["Content-Type"].startswith("text/x-python")
    assert "def eval_fn(trace):" in script.content.decode()
    # The script runs by itself on JSONL traces.
    path = tmp_path / "eval.py"
    path.write_bytes(script.content)
    namespace: dict = {"__name__": "exported"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)  # noqa: S102 - our own export
    assert namespace["eval_fn"](traces[3].data)[0] is False
    body = json.loads(dump.content)
    assert body["format"] == "iofold.eval-set/1"
    assert len(body["labels"]) == 6
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert body["versions"][1]["parent_version"] == 1


def test_export_script_honours_accept_header(api_client, owner, workspace, versions):
    _, _, v1, _ = versions
    api_client.force_login(owner)
    response = api_client.get(
        reverse("api-eval-export", kwargs={"pk": v1.pk}),
        headers={"X-Workspace": workspace.slug, "Accept": "text/x-python"},
    )
    assert response.status_code == 200 and b"def eval_fn" in response.content


def _matrix(api_client, workspace, eval_set, **query):
    return api_client.get(
        reverse("api-eval-set-matrix", kwargs={"pk": eval_set.pk}),
        query,
        headers={"X-Workspace": workspace.slug},
    )


def test_matrix_counts_and_cells(api_client, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    api_client.force_login(owner)

    body = _matrix(api_client, workspace, eval_set).json()

    assert body["count"] == 6 and body["pages"] == 1
    columns = {c["version"]: c for c in body["columns"]}
    assert (columns[1]["agree"], columns[1]["contradict"]) == (6, 0)
    assert (columns[2]["agree"], columns[2]["contradict"]) == (3, 3)
    row = next(r for r in body["results"] if r["trace"]["id"] == traces[3].pk)
    assert row["label"] == "negative" and row["notes"] == ["negative because of the output"]
    assert [(c["eval"], c["state"]) for c in row["cells"]] == [
        (v1.pk, "agree"),
        (v2.pk, "contradict"),
    ]
    assert row["cells"][1]["reason"] == "Looks fine"


def test_matrix_filters_and_pages(api_client, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    api_client.force_login(owner)
    early = timezone.make_aware(dt.datetime(2025, 1, 1, 9))
    traces[0].timestamp, traces[0].source = early, "langfuse"
    traces[0].save(update_fields=["timestamp", "source"])

    disagreements = _matrix(api_client, workspace, eval_set, disagreements="true").json()
    only_v1 = _matrix(api_client, workspace, eval_set, disagreements="true", v=[v1.pk]).json()
    dated = _matrix(api_client, workspace, eval_set, **{"from": "2025-01-01", "to": "2025-01-01"})
    by_source = _matrix(api_client, workspace, eval_set, source="langfuse").json()
    page_two = _matrix(api_client, workspace, eval_set, page=2, page_size=4).json()

    assert {r["trace"]["id"] for r in disagreements["results"]} == {t.pk for t in traces[3:]}
    assert only_v1["count"] == 0 and [c["version"] for c in only_v1["columns"]] == [1]
    assert [r["trace"]["id"] for r in dated.json()["results"]] == [traces[0].pk]
    assert [r["trace"]["id"] for r in by_source["results"]] == [traces[0].pk]
    assert (page_two["page"], page_two["pages"], len(page_two["results"])) == (2, 2, 2)


def test_matrix_rejects_bad_filters(api_client, owner, workspace, versions):
    eval_set, *_ = versions
    api_client.force_login(owner)
    assert _matrix(api_client, workspace, eval_set, **{"from": "yesterday"}).status_code == 400
    assert _matrix(api_client, workspace, eval_set, source="nowhere").status_code == 400
    assert _matrix(api_client, workspace, eval_set, page_size=1000).status_code == 400


def test_cell_drill_down(api, versions):
    _, traces, _, v2 = versions

    body = api("get", "api-eval-cell", pk=v2.pk, trace_pk=traces[4].pk).json()

    assert (body["label"], body["state"]) == ("negative", "contradict")
    assert body["verdict"]["passed"] is True and body["verdict"]["reason"] == "Looks fine"
    assert body["trace"]["data"]["output"] == traces[4].data["output"]


def test_cell_of_another_workspaces_trace_is_a_404(api, versions, other_workspace):
    from tests.traces.factories import TraceFactory

    _, _, _, v2 = versions
    foreign = TraceFactory(workspace=other_workspace)
    assert api("get", "api-eval-cell", pk=v2.pk, trace_pk=foreign.pk).status_code == 404


def test_refine_starts_a_generation_polled_through_the_generation_endpoint(api, versions):
    _, _, _, v2 = versions

    started = api("post", "api-eval-refine", pk=v2.pk)

    assert started.status_code == 202
    generation = started.json()
    assert (generation["parent"], generation["status"]) == (v2.pk, "queued")
    run_generation(generation_id=generation["id"])
    polled = api("get", "api-generation", pk=generation["id"]).json()
    assert polled["status"] == "succeeded", polled["error"]
    child = Eval.objects.get(pk=polled["result"])
    assert (child.parent_id, child.origin) == (v2.pk, "refined")
    assert Generation.objects.filter(parent=v2).count() == 1


def test_viewer_reads_but_cannot_activate(api_client, viewer, workspace, versions):
    eval_set, _, _, v2 = versions
    api_client.force_login(viewer)
    headers = {"X-Workspace": workspace.slug}
    read = api_client.get(
        reverse("api-eval-set-versions", kwargs={"pk": eval_set.pk}), headers=headers
    )
    write = api_client.post(reverse("api-eval-activate", kwargs={"pk": v2.pk}), headers=headers)
    assert (read.status_code, write.status_code) == (200, 403)
    v2.refresh_from_db()
    assert v2.status == "draft"


def test_the_eval_list_and_matrix_apis_refuse_unreadable_filters(api, versions):
    # Pages name such filters and ignore them; the API refuses them, naming the parameter.
    eval_set = versions[0]
    assert "status" in api("get", "api-evals", {"status": "bogus"}).json()
    assert "eval_set" in api("get", "api-evals", {"eval_set": "abc"}).json()
    response = api("get", "api-eval-set-matrix", {"source": "bogus", "from": "xx"}, pk=eval_set.pk)
    assert response.status_code == 400 and {"source", "from"} <= set(response.json())


def _statements(call) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert call().status_code == 200
    return len(captured)


def test_versions_list_statements_stay_flat_as_versions_grow(api, versions):
    """A set refined many times lists its versions in as many statements as with two."""
    eval_set, _, _, v2 = versions
    few = _statements(lambda: api("get", "api-eval-set-versions", pk=eval_set.pk))
    parent = v2
    for n in range(3, 13):
        parent = make_eval(eval_set, version=n, parent=parent)

    many = _statements(lambda: api("get", "api-eval-set-versions", pk=eval_set.pk))

    assert many == few
