import re

import pytest
from django.urls import reverse
from django.utils import timezone

from evals.models import Eval, EvalRun
from tests.evals.builders import (
    ALWAYS_PASS_CODE,
    labelled_set,
    make_eval,
    two_judged_versions,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def versions(workspace):
    return two_judged_versions(workspace)


def url(name, ws, **kwargs):
    return reverse(f"evals:{name}", kwargs={"slug": ws.slug, **kwargs})


def test_a_code_eval_says_it_made_no_judge_calls(login, owner, workspace, versions):
    _, _, v1, _ = versions
    page = login(owner).get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert "none: no judge calls over 4 verdicts" in page
    assert "$0.0000 per 1,000 traces" not in page


def test_an_offline_eval_says_it_made_no_model_calls(login, owner, workspace, versions):
    _, _, v1, _ = versions  # made by the offline provider
    page = login(owner).get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert "none: made without a model, no tokens, no cost" in page
    assert "0 in · 0 out" not in page
    assert "$0.0000" not in page


def test_an_llm_eval_shows_its_tokens_and_cost(login, owner, workspace, versions):
    _, _, v1, _ = versions
    Eval.objects.filter(pk=v1.pk).update(
        provider="anthropic", model="claude", input_tokens=1200, output_tokens=300, cost_usd=0.0123
    )
    page = login(owner).get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert "1200 in · 300 out" in page
    assert "$0.0123" in page
    assert "made without a model" not in page


def test_version_chart_legend_names_only_what_is_drawn(login, owner, workspace, versions):
    eval_set, _, v1, _ = versions
    client = login(owner)
    for page_url in (
        url("versions", workspace, pk=eval_set.pk),
        url("detail", workspace, pk=v1.pk),
    ):
        page = client.get(page_url).content.decode()
        chart = page.split('data-testid="agreement-chart"')[1]
        assert chart.count("<polyline") == 1  # agreement, held-out when measured
        assert "dashed grey" not in chart
        assert "Blue line: agreement (on the held-out labels when measured" in chart


def test_with_one_measured_version_the_chart_legend_names_a_dot_not_a_line(login, owner, workspace):
    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    v1 = make_eval(eval_set, version=1, status="draft", agreement=0.75, labels_tested=4)
    client = login(owner)
    for page_url in (
        url("versions", workspace, pk=eval_set.pk),
        url("detail", workspace, pk=v1.pk),
    ):
        chart = client.get(page_url).content.decode().split('data-testid="agreement-chart"')[1]
        legend = chart.split('data-testid="chart-legend">')[1].split("</small>")[0]
        assert "<polyline" not in chart.split("</svg>")[0]
        assert legend.startswith("Blue dot: agreement")
        assert "line" not in legend.replace("dashed orange", "")
        assert "green dot" not in legend  # nothing is active


def test_without_held_out_labels_the_agreement_tile_is_shown_once(
    login, owner, workspace, versions
):
    eval_set, _, v1, _ = versions  # measured on all 4 labels, none held out
    client = login(owner)
    page = client.get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert page.count("<small>agreement · ") == 1

    heldout = {"labelled": 2, "tp": 1, "fp": 0, "fn": 1, "tn": 0, "errors": 0, "accuracy": 0.5}
    measured = make_eval(
        eval_set, version=3, agreement=0.5, metrics={**v1.metrics, "heldout": heldout}
    )
    page = client.get(url("detail", workspace, pk=measured.pk)).content.decode()
    assert page.count("<small>agreement · ") == 2
    assert "held-out, 2 labels" in page


def test_eval_list_says_which_labels_each_agreement_is_on_as_the_eval_page_does(
    login, owner, workspace, versions
):
    eval_set, _, v1, _ = versions  # measured on all 4 labels, none held out
    heldout = {"labelled": 2, "tp": 1, "fp": 0, "fn": 1, "tn": 0, "errors": 0, "accuracy": 0.5}
    measured = make_eval(
        eval_set, version=3, agreement=0.5, metrics={**v1.metrics, "heldout": heldout}
    )
    client = login(owner)
    rows = client.get(reverse("evals:list", kwargs={"slug": workspace.slug})).content.decode()
    for version, scope in ((v1, "all 4 labels"), (measured, "held-out, 2 labels")):
        detail = client.get(url("detail", workspace, pk=version.pk)).content.decode()
        assert f'data-testid="scope-agreement">{scope}</span>' in detail
        row = rows.split(f"<strong>v{version.version}</strong>")[1].split("</tr>")[0]
        assert f'data-testid="agreement-scope">{scope}</small>' in row


def test_diff_and_compare_say_which_labels_each_agreement_is_measured_on(
    login, owner, workspace, versions
):
    """A held-out figure is not "agreement on all N labels": the confusion matrix below
    counts all N, and a reader checking one against the other must see why they differ."""
    eval_set, _, v1, _ = versions
    training = {"labelled": 4, "tp": 2, "fp": 1, "fn": 0, "tn": 1, "errors": 0, "accuracy": 0.75}
    heldout = {"labelled": 4, "tp": 1, "fp": 1, "fn": 1, "tn": 1, "errors": 0, "accuracy": 0.5}
    v3 = make_eval(
        eval_set,
        version=3,
        parent=v1,
        agreement=0.5,
        labels_tested=4,
        metrics={"training": training, "heldout": heldout},
    )
    client = login(owner)
    diff = client.get(url("diff", workspace, pk=eval_set.pk) + "?a=1&b=3").content.decode()
    figures = diff.split('data-testid="diff-figures">')[1].split("</p>")[0]
    assert figures.startswith("Agreement 100% (all 4 labels) → 50% (held-out, 4 labels)")
    page = client.get(url("compare", workspace, pk=v3.pk)).content.decode()
    after = page.split('data-testid="after-agreement">')[1]
    assert after.startswith("50%")
    assert 'v3 agreement · <span data-testid="after-scope">held-out, 4 labels</span>' in after
    assert 'v1 agreement · <span data-testid="before-scope">all 4 labels</span>' in page
    assert "agreement on 4 labels" not in page


def test_pages_render(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    client = login(owner)
    pages = [
        url("list", workspace),
        url("versions", workspace, pk=eval_set.pk),
        url("detail", workspace, pk=v2.pk),
        url("edit", workspace, pk=v2.pk),
        url("diff", workspace, pk=eval_set.pk) + "?a=1&b=2",
        url("matrix", workspace, pk=eval_set.pk),
        url("cell", workspace, pk=v2.pk, trace_pk=traces[3].pk),
        url("compare", workspace, pk=v2.pk),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
    detail = client.get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert 'data-testid="confusion"' in detail and "too lenient" in detail
    matrix = client.get(url("matrix", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="contradictions-v2"' in matrix and "contradict" in matrix


def test_matrix_htmx_returns_the_table_only(login, owner, workspace, versions):
    eval_set, *_ = versions
    response = login(owner).get(
        url("matrix", workspace, pk=eval_set.pk) + "?disagreements=1", HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert "<html" not in body and 'id="matrix"' in body
    assert body.count('class="cell"') == 2 * 2  # two bad traces, two versions


def test_rollback_from_the_versions_page(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    client = login(owner)
    client.post(url("activate", workspace, pk=v2.pk))
    assert Eval.objects.get(eval_set=eval_set, status="active") == v2

    response = client.post(url("activate", workspace, pk=v1.pk), follow=True)

    assert "Rolled back from v2 to v1" in response.content.decode()
    assert Eval.objects.get(eval_set=eval_set, status="active") == v1


def test_edit_shows_problems_with_line_numbers(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    response = login(owner).post(
        url("edit", workspace, pk=v2.pk), {"code": "import os\ndef eval_fn(t):\n  return 1\n"}
    )
    assert response.status_code == 400
    assert "line 1" in response.content.decode()
    assert Eval.objects.filter(eval_set=eval_set).count() == 2


def test_edit_saves_a_version_and_starts_a_test_run(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    code = "def eval_fn(trace):\n    return False, 'strict'\n"
    response = login(owner).post(url("edit", workspace, pk=v2.pk), {"code": code})
    v3 = Eval.objects.get(eval_set=eval_set, version=3)
    assert response.status_code == 302 and response["Location"] == v3.get_absolute_url()
    assert v3.parent == v2
    assert EvalRun.objects.filter(eval=v3, trigger="manual", total=4).exists()


def test_export_downloads(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    client = login(owner)
    script = client.get(url("export", workspace, pk=v1.pk))
    data = client.get(url("export_set", workspace, pk=eval_set.pk))
    assert script["Content-Disposition"].endswith('_v1.py"')
    assert b"def eval_fn" in script.content
    assert data.json()["versions"][1]["parent_version"] == 1


def test_matrix_rows_escape_and_shorten_trace_names(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    traces[0].name = "<script>alert(1)</script> and a name far longer than the column"
    traces[0].save()

    body = login(owner).get(url("matrix", workspace, pk=eval_set.pk)).content.decode()

    assert "<script>alert" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and a…" in body
    assert f'href="/w/{workspace.slug}/traces/{traces[0].pk}/"' in body
    cell = reverse("evals:cell", kwargs={"slug": workspace.slug, "pk": v2.pk, "trace_pk": 0})
    assert f'hx-get="{cell.removesuffix("0/")}{traces[0].pk}/"' in body


@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example/", "http://evil.example/"])
def test_activate_refuses_an_off_site_next(login, owner, workspace, versions, target):
    eval_set, traces, v1, v2 = versions
    response = login(owner).post(url("activate", workspace, pk=v2.pk), {"next": target})
    assert response.status_code == 302 and response.url == v2.get_absolute_url()


def test_activate_returns_to_a_same_site_next(login, owner, workspace, versions):
    eval_set, traces, v1, v2 = versions
    back = url("versions", workspace, pk=eval_set.pk)
    response = login(owner).post(url("activate", workspace, pk=v2.pk), {"next": back})
    assert response.url == back


def test_the_version_page_shows_a_batch_run_in_progress(login, owner, workspace, versions):
    _, traces, v1, _ = versions
    EvalRun.objects.create(
        workspace=workspace, eval=v1, trigger="api", status="running", total=500, done=120
    )

    page = login(owner).get(url("detail", workspace, pk=v1.pk)).content.decode()

    assert "Judging 500 traces (API run): 120 done" in page
    assert 'value="120" max="500"' in page and 'hx-trigger="every 2s"' in page

    EvalRun.objects.filter(eval=v1).update(status="succeeded", done=500, passed=500)
    page = login(owner).get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert "500 pass, 0 fail" in page and 'hx-trigger="every 2s"' not in page


def test_matrix_and_drill_down_show_input_output_and_the_reviewers_note(
    login, owner, workspace, versions
):
    from traces.models import Feedback

    eval_set, traces, v1, v2 = versions
    traces[0].data = {**traces[0].data, "input": "<b>where is order 77?</b>"}
    traces[0].save()
    Feedback.objects.filter(eval_set=eval_set, trace=traces[0]).update(note="Missed the date")
    client = login(owner)

    matrix = client.get(url("matrix", workspace, pk=eval_set.pk)).content.decode()
    assert "&lt;b&gt;where is order 77?&lt;/b&gt;" in matrix
    assert traces[0].data["output"][:20] in matrix
    assert "“Missed the date”" in matrix

    cell = client.get(url("cell", workspace, pk=v2.pk, trace_pk=traces[0].pk)).content.decode()
    assert 'data-testid="cell-io"' in cell
    assert "&lt;b&gt;where is order 77?&lt;/b&gt;" in cell
    assert "Missed the date" in cell


def test_roll_back_is_offered_only_for_versions_that_were_active(login, owner, workspace, versions):
    from django.utils import timezone

    eval_set, traces, v1, v2 = versions
    Eval.objects.filter(pk=v1.pk).update(status="draft", activated_at=None)
    Eval.objects.filter(pk=v2.pk).update(status="active", activated_at=timezone.now())
    client = login(owner)
    page = client.get(url("versions", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="activate-1"' in page and "Roll back" not in page
    Eval.objects.filter(pk=v1.pk).update(activated_at=timezone.now())
    page = client.get(url("versions", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="rollback-1"' in page


def _figures(labelled, **counts):
    return {"labelled": labelled, "errors": 0, "accuracy": 0.9, "kappa": 0.8, **counts}


@pytest.mark.parametrize(
    ("kept_back", "training_scope"),
    [(False, "all 10 labels"), (True, "training, 6 labels")],
)
def test_the_version_page_says_which_labels_each_figure_is_on(
    login, owner, workspace, kept_back, training_scope
):
    # Cross-validation measures the training figures on every label; traces kept back
    # leave the training figures on the rest. Either way κ and agreement are held-out.
    eval_set, _ = labelled_set(workspace, good=1, bad=1)
    n = 6 if kept_back else 10
    metrics = {
        "training": _figures(n, tp=n // 2, fp=0, fn=0, tn=n - n // 2, precision=1.0, recall=1.0),
        "heldout": _figures(4, tp=2, fp=1, fn=0, tn=1),
        "labels": {"positive": 5, "negative": 5, "neutral": 0},
        "method": "kept back" if kept_back else "5-fold cross-validation",
    }
    if kept_back:
        metrics["heldout_trace_ids"] = [1, 2, 3, 4]
    v = make_eval(eval_set, version=1, metrics=metrics, agreement=0.75, labels_tested=10)
    page = login(owner).get(url("detail", workspace, pk=v.pk)).content.decode()
    for figure in ("kappa", "balanced-accuracy", "agreement"):
        assert f'data-testid="scope-{figure}">held-out, 4 labels<' in page
    assert f'data-testid="scope-precision-recall">{training_scope}<' in page
    assert f'data-testid="scope-training">{training_scope}<' in page
    assert f'data-testid="confusion-scope">{training_scope.capitalize()}<' in page


def test_the_diff_of_identical_code_shows_only_the_notice(login, owner, workspace, versions):
    eval_set, _, _, v2 = versions
    make_eval(eval_set, version=3, parent=v2, code=ALWAYS_PASS_CODE)
    client = login(owner)
    same = client.get(url("diff", workspace, pk=eval_set.pk) + "?a=2&b=3").content.decode()
    assert "The two versions have the same code." in same
    # The side-by-side table (difflib's, spaces as &nbsp;) is left out.
    assert 'class="diff"' not in same and "Looks&nbsp;fine" not in same
    changed = client.get(url("diff", workspace, pk=eval_set.pk) + "?a=1&b=3").content.decode()
    assert "same code" not in changed
    assert 'class="diff"' in changed and "Looks&nbsp;fine" in changed


def test_the_diff_shows_the_changed_lines_not_the_whole_code(login, owner, workspace, versions):
    eval_set, *_ = versions
    helpers = "".join(f"line_{n:03d} = {n}\n" for n in range(300))
    make_eval(eval_set, version=3, code=helpers)
    make_eval(eval_set, version=4, code=helpers.replace("line_150 = 150", "line_150 = -1"))
    client = login(owner)
    for page_url in (
        url("diff", workspace, pk=eval_set.pk) + "?a=3&b=4",
        url("compare", workspace, pk=Eval.objects.get(eval_set=eval_set, version=4).pk)
        + "?against=3",
    ):
        page = client.get(page_url).content.decode()
        assert "line_150" in page and "line_148" in page  # the change, in context
        assert "line_010" not in page and "line_290" not in page  # not the untouched rest


def test_versions_that_rewrite_every_line_show_a_line_diff(login, owner, workspace, versions):
    """Pairing up 3,000 rewritten lines side by side took minutes: the page hung. The diff
    and the before / after page show every changed line as a line diff instead, and say so."""
    eval_set, *_ = versions
    make_eval(eval_set, version=3, code="".join(f"old_{n:03d} = {n}\n" for n in range(120)))
    make_eval(eval_set, version=4, code="".join(f"new_{n:03d} = -{n}\n" for n in range(120)))
    client = login(owner)
    for page_url in (
        url("diff", workspace, pk=eval_set.pk) + "?a=3&b=4",
        url("compare", workspace, pk=Eval.objects.get(eval_set=eval_set, version=4).pk)
        + "?against=3",
    ):
        response = client.get(page_url)

        page = response.content.decode()
        assert response.status_code == 200
        assert "v4 removes 120 lines of v3 and adds 120: too many to lay side by side" in page
        assert '<span class="diff_sub">-old_000 = 0</span>' in page
        assert '<span class="diff_add">+new_119 = -119</span>' in page
        assert '<table class="diff"' not in page


def test_long_code_is_highlighted_up_to_its_first_lines_with_the_download(
    login, owner, workspace, versions
):
    """3,000 highlighted lines made a 1.3 MB version page, and again each matrix cell."""
    from evals.templatetags.evals_display import MAX_SHOWN_CODE_LINES

    eval_set, traces, v1, _ = versions
    total = MAX_SHOWN_CODE_LINES + 100
    body = "".join(f"    helper_{n:04d} = {n}\n" for n in range(total - 2))
    long = make_eval(eval_set, version=3, code=f"def eval_fn(trace):\n{body}    return True, ''\n")
    client = login(owner)
    export_url = url("export", workspace, pk=long.pk)

    for page_url in (
        url("detail", workspace, pk=long.pk),
        url("cell", workspace, pk=long.pk, trace_pk=traces[0].pk),
    ):
        response = client.get(page_url)

        html = response.content.decode()
        assert response.status_code == 200
        assert f"helper_{MAX_SHOWN_CODE_LINES - 2:04d}" in html
        assert f"helper_{MAX_SHOWN_CODE_LINES - 1:04d}" not in html
        notice = html.split('data-testid="code-cut">')[1].split("</p>")[0]
        assert notice == (
            f"Showing the first {MAX_SHOWN_CODE_LINES} of {total} lines. "
            f'<a href="{export_url}">Download all (.py)</a>'
        )
    assert f"helper_{total - 3:04d}" in client.get(export_url).content.decode()
    # Code that fits shows whole, without the notice.
    short = client.get(url("detail", workspace, pk=v1.pk)).content.decode()
    assert "The assistant refused" in short and "code-cut" not in short


def test_compare_says_when_a_refinement_kept_the_same_code(login, owner, workspace, versions):
    _, _, v1, _ = versions
    same = make_eval(v1.eval_set, version=3, parent=v1, code=v1.code, origin="refined")
    client = login(owner)
    page = client.get(url("compare", workspace, pk=same.pk)).content.decode()
    assert "v3 has the same code as v1. Refining found no better rule" in page
    assert 'class="diff"' not in page and "No Differences Found" not in page
    # Against another version with the same code, nothing is said about refining.
    copy = make_eval(v1.eval_set, version=4, code=v1.code, origin="edited")
    page = client.get(url("compare", workspace, pk=copy.pk) + "?against=1").content.decode()
    assert "v4 has the same code as v1." in page and "Refining" not in page


def test_compare_opens_while_the_new_version_has_not_judged_yet(login, owner, workspace, versions):
    """A hand edit is compared with its parent while its test run is still queued."""
    _, traces, v1, _ = versions
    wrong = not traces[0].data["output"].startswith("Your")  # v1 gets one trace wrong
    v1.executions.filter(trace=traces[0]).update(passed=wrong, updated_at=timezone.now())
    edited = make_eval(v1.eval_set, version=3, parent=v1, code=ALWAYS_PASS_CODE, origin="edited")

    response = login(owner).get(url("compare", workspace, pk=edited.pk))

    assert response.status_code == 200
    assert "not judged yet" in response.content.decode()


def test_an_eval_list_filtered_to_nothing_says_so_not_no_evals_yet(
    login, owner, workspace, versions
):
    eval_set = versions[0]
    client = login(owner)
    page = client.get(reverse("evals:list", kwargs={"slug": workspace.slug}), {"status": "shadow"})
    html = page.content.decode()
    assert "No evals yet" not in html and 'data-testid="no-match"' in html
    assert "No eval set has a shadow version." in html
    page = client.get(
        reverse("evals:list", kwargs={"slug": workspace.slug}),
        {"set": eval_set.pk, "status": "shadow"},
    )
    assert f"“{eval_set.name}” has no shadow version." in page.content.decode()


def test_the_eval_set_page_counts_one_eval_in_the_singular(login, owner, workspace):
    eval_set, _ = labelled_set(workspace, good=2, bad=2)
    make_eval(eval_set, version=1, agreement=1.0)
    html = login(owner).get(eval_set.get_absolute_url()).content.decode()
    assert "<strong>1</strong><small>eval · best agreement" in html


def test_a_run_opened_as_a_page_goes_to_the_eval_not_a_bare_fragment(
    login, owner, workspace, versions
):
    _, _, v1, _ = versions
    run = EvalRun.objects.create(workspace=workspace, eval=v1, trigger="api", status="running")
    client = login(owner)
    progress = url("run_progress", workspace, pk=v1.pk, run_pk=run.pk)
    page = client.get(progress)
    assert page.status_code == 302 and page.url == v1.get_absolute_url()
    fragment = client.get(progress, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'data-testid="run"' in fragment.content.decode()


def test_polling_a_finished_run_does_not_remeasure_the_version(login, owner, workspace, versions):
    # The worker measures the version when the run finishes; a GET must not write.
    _, _, _, v2 = versions
    run = EvalRun.objects.create(
        workspace=workspace,
        eval=v2,
        trigger="manual",
        status="succeeded",
        finished_at=timezone.now(),
    )
    before = Eval.objects.values("metrics", "agreement", "updated_at").get(pk=v2.pk)
    fragment = login(owner).get(
        url("run_progress", workspace, pk=v2.pk, run_pk=run.pk), headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 286
    assert Eval.objects.values("metrics", "agreement", "updated_at").get(pk=v2.pk) == before


def test_a_first_version_has_nothing_to_compare_rather_than_a_404(login, owner, workspace):
    eval_set, _ = labelled_set(workspace, good=1, bad=1)
    v1 = make_eval(eval_set, version=1)
    client = login(owner)
    for page in (
        client.get(url("diff", workspace, pk=eval_set.pk)),
        client.get(url("compare", workspace, pk=v1.pk)),
    ):
        html = page.content.decode()
        assert page.status_code == 200
        assert "Nothing to compare yet" in html and "may have been deleted" not in html
        assert "first version" in html and f'href="{v1.get_absolute_url()}"' in html


def test_the_eval_list_names_the_filters_it_could_not_read(login, owner, workspace, versions):
    client = login(owner)
    page = client.get(reverse("evals:list", kwargs={"slug": workspace.slug}), {"status": "bogus"})
    html = page.content.decode()
    assert page.status_code == 200 and 'data-testid="unread-filters"' in html
    assert "Not understood, so ignored" in html and "<strong>Status</strong>" in html
    assert "&#x27;bogus&#x27; is not one of draft" in html
    html = client.get(
        reverse("evals:list", kwargs={"slug": workspace.slug}), {"set": "abc"}
    ).content.decode()
    assert "<strong>Eval set</strong>: &#x27;abc&#x27; is not an eval set id." in html
    # Filters that read say nothing.
    html = client.get(
        reverse("evals:list", kwargs={"slug": workspace.slug}), {"status": "active"}
    ).content.decode()
    assert 'data-testid="unread-filters"' not in html


def test_the_matrix_names_the_filters_it_could_not_read(login, owner, workspace, versions):
    eval_set = versions[0]
    client = login(owner)
    query = {"source": "bogus", "from": "xx", "to": "2026-01-01"}
    for headers in ({}, {"HX-Request": "true"}):
        page = client.get(url("matrix", workspace, pk=eval_set.pk), query, headers=headers)
        html = page.content.decode()
        assert page.status_code == 200 and "Not understood, so ignored" in html
        assert "<strong>Source</strong>: &#x27;bogus&#x27; is not a source of traces" in html
        assert "<strong>From</strong>: &#x27;xx&#x27; is not a date (YYYY-MM-DD)." in html
        assert "<strong>To</strong>" not in html
    html = client.get(url("matrix", workspace, pk=eval_set.pk)).content.decode()
    assert 'data-testid="unread-filters"' not in html


def test_the_matrix_names_a_page_number_it_could_not_read(login, owner, workspace, versions):
    eval_set = versions[0]
    client = login(owner)
    for given in ("abc", "²"):
        page = client.get(url("matrix", workspace, pk=eval_set.pk), {"page": given})
        html = page.content.decode()
        assert page.status_code == 200 and 'data-testid="unread-filters"' in html
        assert "<strong>Page</strong>: " in html and "is not a page number." in html
    html = client.get(url("matrix", workspace, pk=eval_set.pk), {"page": "1"}).content.decode()
    assert 'data-testid="unread-filters"' not in html


def test_before_after_shows_no_contradictions_for_a_version_not_measured(
    login, owner, workspace, versions
):
    # v2 has verdicts stored (a test run going) but no figures yet.
    _, _, v1, v2 = versions
    client = login(owner)
    html = client.get(url("compare", workspace, pk=v2.pk)).content.decode()
    assert "Not measured on the labels yet" in html
    assert 'data-testid="contradictions-v2">–</strong>' in html
    assert "v2 contradictions: not measured yet" in html
    assert 'data-testid="contradictions-v1">0</strong>' in html
    v2.metrics = {"training": {"tp": 2, "fp": 2, "fn": 0, "tn": 0, "errors": 0}}
    v2.save(update_fields=["metrics"])
    html = client.get(url("compare", workspace, pk=v2.pk)).content.decode()
    assert "Not measured on the labels yet" not in html
    assert 'data-testid="contradictions-v2">2</strong>' in html


def test_the_confusion_box_says_errors_and_neutral_labels_are_in_no_figure(login, owner, workspace):
    """Measured for real: one labelled trace errs, one label is neutral. The four cells
    and the errors add up to the labelled traces, and agreement is over the verdicts given
    (5 of 5), so the page must not call the error a disagreement."""
    from evals.execution.runs import run_unjudged_labels
    from evals.metrics.measure import score_eval_version
    from tests.evals.builders import REFUSAL_CODE

    eval_set, traces = labelled_set(workspace, good=3, bad=3, neutral=1)
    erring = traces[0].data["id"]
    code = REFUSAL_CODE.replace(
        "    output =",
        f'    if trace["id"] == {erring!r}:\n        raise ValueError("boom")\n    output =',
    )
    v = make_eval(eval_set, version=1, code=code)
    run_unjudged_labels(eval=v)
    v = score_eval_version(eval=v)

    m = v.metrics["training"]
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["errors"], m["labelled"]) == (2, 0, 0, 3, 1, 6)
    assert v.agreement == 1.0 and m["coverage"] == pytest.approx(5 / 6)
    page = login(owner).get(url("detail", workspace, pk=v.pk)).content.decode()
    assert "counted as disagreements" not in page
    assert 'data-testid="confusion-errors">1 of these labelled trace got no verdict' in page
    assert "left out of the four counts and of agreement" in page
    assert 'data-testid="confusion-neutral">1 neutral label left out' in page


def test_labels_changed_after_measuring_mark_the_figures_out_of_date_until_measured_again(
    login, owner, workspace, api_client
):
    from evals.metrics.measure import score_eval_version
    from tests.evals.builders import generate
    from traces.models import Feedback
    from traces.services import edit_label, remove_label

    eval_set, _ = labelled_set(workspace, good=4, bad=4)
    v = generate(eval_set).result
    client = login(owner)
    api_client.force_login(owner)
    api_url = reverse("api-eval", kwargs={"pk": v.pk})
    headers = {"X-Workspace": workspace.slug}

    def shown():
        page = client.get(url("detail", workspace, pk=v.pk)).content.decode()
        api = api_client.get(api_url, headers=headers).json()["labels_changed_since_measured"]
        return ('data-testid="labels-changed"' in page), api

    assert shown() == (False, 0)
    membership = owner.memberships.get(workspace=workspace)
    first, second = Feedback.objects.filter(eval_set=eval_set).order_by("id")[:2]
    edit_label(feedback=first, actor=owner, role=membership.role, rating="positive", note="n")
    assert shown() == (False, 0)  # a note alone changes no figure
    edit_label(feedback=first, actor=owner, role=membership.role, rating="negative", note="n")
    remove_label(feedback=second, actor=owner, role=membership.role)
    assert shown() == (True, 2)
    page = client.get(url("detail", workspace, pk=v.pk)).content.decode()
    assert "2 labels were given, changed or removed since these figures were measured" in page

    score_eval_version(eval=v)  # what Test again ends with

    assert shown() == (False, 0)
    v.refresh_from_db()
    assert v.metrics["labels"] == {"positive": 2, "negative": 5, "neutral": 0}


def test_compare_says_the_same_labels_only_when_both_versions_are_measured_on_them(
    login, owner, workspace
):
    from evals.metrics.measure import score_eval_version
    from tests.evals.builders import generate
    from tests.traces.factories import TraceFactory, trace_data
    from traces.services import add_traces_to_eval_set, record_feedback

    eval_set, _ = labelled_set(workspace, good=4, bad=4)
    v1 = generate(eval_set).result
    late = TraceFactory(workspace=workspace, data=trace_data(81_000, output="I cannot."))
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[late.pk])
    record_feedback(eval_set=eval_set, trace=late, user=owner, rating="negative")
    v2 = generate(eval_set).result
    assert (v1.labels_tested, v2.labels_tested) == (8, 9)
    client = login(owner)

    def page():
        return client.get(url("compare", workspace, pk=v2.pk) + "?against=1").content.decode()

    assert "Measured on the same" not in page()  # v1 was measured before the ninth label
    assert "Not measured on the same labels: v1 on 8, v2 on 9" in page()
    score_eval_version(eval=v1)
    assert "Measured on the same 9 labels, the set's labels now." in page()


def test_the_eval_lists_mark_versions_measured_before_a_label_change(login, owner, workspace):
    """Before: the lists showed κ and agreement with no hint they predate the labels."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from evals.metrics.measure import score_eval_version
    from tests.evals.builders import make_eval
    from traces.models import Feedback
    from traces.services import remove_label

    eval_set, _ = labelled_set(workspace, good=3, bad=3)
    score_eval_version(eval=make_eval(eval_set, version=1))
    client = login(owner)
    pages = [url("list", workspace), url("versions", workspace, pk=eval_set.pk)]

    def marked(page_url):
        with CaptureQueriesContext(connection) as queries:
            html = client.get(page_url).content.decode()
        return html.count('data-testid="out-of-date"'), len(queries)

    [marked(p) for p in pages]  # warm the per-session caches
    before = [marked(p) for p in pages]
    assert [shown for shown, _ in before] == [0, 0]

    membership = owner.memberships.get(workspace=workspace)
    remove_label(
        feedback=Feedback.objects.filter(eval_set=eval_set).first(),
        actor=owner,
        role=membership.role,
    )
    for version in (2, 3):  # measured on the labels as they are now
        score_eval_version(eval=make_eval(eval_set, version=version))

    after = [marked(p) for p in pages]
    assert [shown for shown, _ in after] == [1, 1]  # v1 only
    page = client.get(pages[1]).content.decode()
    row = page[page.index('data-version="1"') :].split("</tr>")[0]
    assert 'data-testid="out-of-date"' in row
    # No query per row: three versions cost what one did.
    assert [n for _, n in after] == [n for _, n in before]


def test_without_javascript_a_running_test_reloads_the_page_until_it_ends(
    login, owner, workspace, versions
):
    """Before: with JavaScript off, "Testing…" stayed until reloaded by hand."""
    _, _, v1, _ = versions
    run = EvalRun.objects.create(workspace=workspace, eval=v1, trigger="api", status="running")
    client = login(owner)
    reload = '<noscript><meta http-equiv="refresh" content="5"></noscript>'
    running = client.get(v1.get_absolute_url()).content.decode()
    assert reload in running.split("</head>")[0]

    EvalRun.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())

    assert reload not in client.get(v1.get_absolute_url()).content.decode()


@pytest.mark.parametrize(
    ("page", "query"),
    [("matrix", {"v": "\u00b2"}), ("compare", {"against": "\u00b2"})],
)
def test_a_version_that_is_no_number_is_not_read_rather_than_a_500(
    login, owner, workspace, versions, page, query
):
    """ "²" is a digit to ``str.isdigit`` but not to ``int``: both pages answered a 500."""
    eval_set, _, _, v2 = versions
    pk = eval_set.pk if page == "matrix" else v2.pk

    response = login(owner).get(url(page, workspace, pk=pk), query)

    assert response.status_code == 200
    if page == "matrix":
        assert "Versions" in response.content.decode()  # named as not read


def test_the_eval_list_apis_say_which_versions_are_out_of_date_in_one_grouped_query(
    owner, workspace, api_client
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.evals.builders import generate
    from traces.models import Feedback
    from traces.services import edit_label

    eval_set, _ = labelled_set(workspace, good=4, bad=4)
    old = generate(eval_set).result
    membership = owner.memberships.get(workspace=workspace)
    label = Feedback.objects.filter(eval_set=eval_set, rating="positive").first()
    edit_label(feedback=label, actor=owner, role=membership.role, rating="negative", note="")
    new = generate(eval_set).result  # measured on the labels as they are now
    api_client.force_login(owner)
    headers = {"X-Workspace": workspace.slug}
    listed = reverse("api-evals")

    def out_of_date():
        with CaptureQueriesContext(connection) as queries:
            rows = api_client.get(listed, {"eval_set": eval_set.pk}, headers=headers).json()
        return {r["id"]: r["out_of_date"] for r in rows["results"]}, len(queries)

    marks, two_versions = out_of_date()
    assert marks == {old.pk: True, new.pk: False}
    versions = api_client.get(
        reverse("api-eval-set-versions", kwargs={"pk": eval_set.pk}), headers=headers
    ).json()["versions"]
    assert {v["id"]: v["out_of_date"] for v in versions} == marks
    detail = api_client.get(reverse("api-eval", kwargs={"pk": old.pk}), headers=headers).json()
    assert (detail["out_of_date"], detail["labels_changed_since_measured"]) == (True, 1)

    generate(eval_set)
    generate(eval_set)
    marks, four_versions = out_of_date()
    assert len(marks) == 4 and four_versions == two_versions  # not a query per version


def test_a_version_held_by_another_workspace_never_shows_in_this_workspaces_set(
    owner, workspace, other_workspace, api_client, login
):
    """Every version query is scoped to the workspace (for_workspace / for_eval_set), not
    only through the set: a row of another workspace pointing at this set, as a broken
    import would leave, is not this workspace's."""
    eval_set, _ = labelled_set(workspace, good=1, bad=1)
    mine = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE)
    Eval.objects.create(
        workspace=other_workspace, eval_set=eval_set, version=9, code="x = 1",
        description="FOREIGN-VERSION",
    )  # fmt: skip
    api_client.force_login(owner)

    versions = api_client.get(
        reverse("api-eval-set-versions", kwargs={"pk": eval_set.pk}),
        headers={"X-Workspace": workspace.slug},
    ).json()["versions"]
    page = login(owner).get(url("detail", workspace, pk=mine.pk)).content.decode()

    assert [v["id"] for v in versions] == [mine.pk]
    # "v9" as a word: a CSRF token on the page may hold the two characters by chance.
    assert "FOREIGN-VERSION" not in page and not re.search(r"\bv9\b", page)


def test_eval_version_queries_go_through_the_workspace_scoping_helper():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    bare = [
        f"{path.relative_to(root)}:{n}"
        for app in ("evals", "traces", "integrations")
        for path in (root / app).rglob("*.py")
        if "migrations" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if "Eval.objects.filter(eval_set=" in line or "Eval.objects.filter(eval_set_id=" in line
    ]
    assert bare == [], "scope them with Eval.objects.for_eval_set / for_workspace"


def test_the_matrix_csv_opens_in_a_spreadsheet_in_any_script_and_runs_no_formula(
    login, owner, workspace, versions
):
    """Excel reads a CSV without a byte-order mark in the system's code page (a reviewer's
    Arabic note came out as mojibake), and runs a cell that starts like a formula: a
    trace name a source sent, ``=HYPERLINK(...)``, became a live link."""
    import csv
    import io

    from traces.models import Feedback, Trace

    eval_set, traces, _, _ = versions
    Trace.objects.filter(pk=traces[0].pk).update(name='=HYPERLINK("http://127.0.0.1:9/","x")')
    Feedback.objects.filter(trace=traces[0]).update(note="الإجابة صحيحة 👍")
    Feedback.objects.filter(trace=traces[1]).update(note="-1 for tone")
    response = login(owner).get(url("matrix_csv", workspace, pk=eval_set.pk))

    assert response.content.startswith("\ufeff".encode())
    rows = {
        r["trace_id"]: r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
    }
    first, second = rows[str(traces[0].pk)], rows[str(traces[1].pk)]
    assert first["name"] == '\'=HYPERLINK("http://127.0.0.1:9/","x")'
    assert first["notes"] == "الإجابة صحيحة 👍"
    assert second["notes"] == "'-1 for tone"
