import json
import shutil
import subprocess

import pytest
from django.db import IntegrityError, transaction

import sandbox
from evals.models import Eval
from evals.versions.export import export_eval_script, export_eval_set
from evals.versions.services import (
    EvalActionError,
    InvalidEvalCode,
    activate_eval,
    archive_eval,
    edit_eval_code,
    restore_eval,
    rollback_to,
)
from tests.evals.builders import ALWAYS_PASS_CODE, REFUSAL_CODE, labelled_set, make_eval

pytestmark = pytest.mark.django_db


@pytest.fixture
def eval_set(workspace):
    return labelled_set(workspace, good=3, bad=3)[0]


def test_activation_keeps_exactly_one_active_version(eval_set):
    v1 = make_eval(eval_set, version=1)
    v2 = make_eval(eval_set, version=2)

    activate_eval(eval=v1)
    activate_eval(eval=v2)

    statuses = dict(Eval.objects.filter(eval_set=eval_set).values_list("version", "status"))
    assert statuses == {1: "draft", 2: "active"}
    v2.refresh_from_db()
    assert v2.activated_at is not None


def test_database_refuses_a_second_active_version(eval_set):
    make_eval(eval_set, version=1, status="active")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_eval(eval_set, version=2, status="active")


def test_activating_the_active_version_changes_nothing(eval_set):
    v1 = activate_eval(eval=make_eval(eval_set, version=1))
    first = v1.activated_at
    assert activate_eval(eval=v1).activated_at == first


def test_rollback_activates_the_older_version(eval_set):
    v1 = make_eval(eval_set, version=1)
    v2 = make_eval(eval_set, version=2, parent=v1)
    activate_eval(eval=v2)

    rollback_to(eval=v1)

    assert Eval.objects.get(status="active", eval_set=eval_set) == v1
    v2.refresh_from_db()
    assert v2.status == "draft"


def test_rollback_refuses_a_newer_version(eval_set):
    v1 = activate_eval(eval=make_eval(eval_set, version=1))
    v2 = make_eval(eval_set, version=2, parent=v1)
    with pytest.raises(EvalActionError, match="newer"):
        rollback_to(eval=v2)


def test_archive_and_restore(eval_set):
    v1 = activate_eval(eval=make_eval(eval_set, version=1))
    assert archive_eval(eval=v1).status == "archived"
    assert not Eval.objects.filter(eval_set=eval_set, status="active").exists()
    assert restore_eval(eval=v1).status == "draft"


def test_edit_saves_a_new_version_with_lineage(eval_set, owner):
    v1 = make_eval(eval_set, version=1, code=ALWAYS_PASS_CODE)

    v2 = edit_eval_code(eval=v1, code=REFUSAL_CODE, user=owner)

    assert (v2.version, v2.parent, v2.origin, v2.status) == (2, v1, "edited", "draft")
    assert v2.code == REFUSAL_CODE
    v1.refresh_from_db()
    assert v1.code == ALWAYS_PASS_CODE  # versions never change


def test_edit_rejects_forbidden_code_with_line_numbers(eval_set):
    v1 = make_eval(eval_set, version=1)
    code = "import os\n\ndef eval_fn(trace):\n    return True, os.name\n"

    with pytest.raises(InvalidEvalCode) as caught:
        edit_eval_code(eval=v1, code=code)

    assert caught.value.problems[0].line == 1
    assert "os" in caught.value.problems[0].message
    assert Eval.objects.filter(eval_set=eval_set).count() == 1


def test_edit_rejects_code_that_fails_its_dry_run(eval_set):
    v1 = make_eval(eval_set, version=1)
    code = "def eval_fn(trace):\n    x = trace['nope']\n    return True, 'ok'\n"

    with pytest.raises(InvalidEvalCode) as caught:
        edit_eval_code(eval=v1, code=code)

    problem = caught.value.problems[0]
    assert problem.line == 2
    assert "KeyError" in problem.message
    assert Eval.objects.filter(eval_set=eval_set).count() == 1


def test_edit_refuses_unchanged_code(eval_set):
    v1 = make_eval(eval_set, version=1)
    with pytest.raises(EvalActionError, match="unchanged"):
        edit_eval_code(eval=v1, code=REFUSAL_CODE + "\n")


# --- export ---------------------------------------------------------------------------


TRICKY_CODE = '''import re

PATTERN = re.compile(r"cannot|won't")


def eval_fn(trace):
    """Refusals are bad; \\"\\"\\" quotes in docstrings survive."""
    output = trace.get("output")
    if output is None:
        raise ValueError("no output")
    if PATTERN.search(str(output)):
        return False, "Refused: " + str(output)[:40]
    return True, "Answered"
'''


def test_exported_script_runs_alone_and_matches_the_sandbox(workspace, tmp_path):
    eval_set, traces = labelled_set(workspace, good=2, bad=2)
    eval_set.criteria = 'Never refuse. Quotes """ and backslashes \\ are fine.'
    eval_set.save()
    v1 = make_eval(
        eval_set,
        version=1,
        code=TRICKY_CODE,
        metrics={"training": {"accuracy": 1.0, "kappa": 1.0, "labelled": 4}},
        agreement=1.0,
        labels_tested=4,
    )
    payloads = [t.data for t in traces] + [{"id": "odd", "output": None}]
    script = tmp_path / "eval.py"
    script.write_text(export_eval_script(v1))
    jsonl = tmp_path / "traces.jsonl"
    jsonl.write_text("\n".join(json.dumps(p) for p in payloads) + "\n")
    python = shutil.which("python3") or "/usr/bin/python3"

    by_path = subprocess.run(
        [python, "-I", str(script), str(jsonl)], capture_output=True, text=True, timeout=30
    )
    by_stdin = subprocess.run(
        [python, "-I", str(script)],
        input=jsonl.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert by_path.returncode == 0, by_path.stderr
    assert by_path.stdout == by_stdin.stdout
    verdicts = [json.loads(line) for line in by_path.stdout.splitlines()]
    expected = sandbox.run(TRICKY_CODE, payloads)
    assert [v["id"] for v in verdicts] == [p["id"] for p in payloads]
    assert [(v["passed"], v["reason"]) for v in verdicts] == [
        (r.passed, r.reason) for r in expected
    ]
    assert verdicts[-1]["passed"] is None and "ValueError" in verdicts[-1]["error"]
    text = script.read_text()
    assert "Never refuse." in text and "version 1" in text and "kappa 1.000" in text


def test_eval_set_export_holds_labels_and_versions(workspace):
    eval_set, traces = labelled_set(workspace, good=1, bad=1)
    v1 = make_eval(eval_set, version=1)
    make_eval(eval_set, version=2, parent=v1, code=ALWAYS_PASS_CODE)

    exported = json.loads(json.dumps(export_eval_set(eval_set)))

    assert exported["eval_set"]["criteria"] == eval_set.criteria
    assert sorted(x["label"] for x in exported["labels"]) == ["negative", "positive"]
    assert exported["labels"][0]["trace"]["id"] == traces[0].data["id"]
    assert [(v["version"], v["parent_version"]) for v in exported["versions"]] == [
        (1, None),
        (2, 1),
    ]
    assert exported["versions"][1]["code"] == ALWAYS_PASS_CODE
