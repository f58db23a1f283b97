"""Labels a team already has arrive with its traces: JSONL `label`/`note` into an eval set."""

import json

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.traces.factories import EvalSetFactory
from traces.models import Feedback, Trace


def _line(n, **extra):
    return json.dumps(
        {
            "id": f"run-{n}",
            "name": "support-agent",
            "timestamp": "2026-11-20T10:00:00Z",
            "input": {"question": f"where is order {n}?"},
            "output": {"answer": "It ships today."},
            **extra,
        }
    )


def _upload(client, eval_set, lines):
    url = reverse(
        "traces:evalset_import", kwargs={"slug": eval_set.workspace.slug, "pk": eval_set.pk}
    )
    body = ("\n".join(lines) + "\n").encode()
    return client.post(url, {"file": SimpleUploadedFile("labels.jsonl", body)})


def test_labels_in_the_file_become_labels_and_stay_out_of_the_trace(login, workspace, owner):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    response = _upload(
        login(owner),
        eval_set,
        [
            _line(1, label="good", note="found the order"),
            _line(2, label="bad"),
            _line(3),
            _line(4, label="great"),
        ],
    )
    assert response.status_code == 200
    report = response.context["report"]
    assert report.labelled == 2
    assert [line for line, _ in report.ingest.errors] == [4]
    labels = {
        f.trace.external_id: (f.rating, f.note, f.origin, f.user)
        for f in Feedback.objects.filter(eval_set=eval_set).select_related("trace")
    }
    assert labels == {
        "run-1": ("positive", "found the order", "upload", owner),
        "run-2": ("negative", "", "upload", owner),
    }
    # The eval reads trace.data: the label must not be there for it to copy.
    stored = Trace.objects.get(external_id="run-1")
    assert "label" not in stored.data and "note" not in stored.data
    # Unlabelled lines still join the set; the bad line joins nothing.
    assert set(Trace.objects.in_eval_set(eval_set).values_list("external_id", flat=True)) == {
        "run-1",
        "run-2",
        "run-3",
    }
    page = login(owner).get(eval_set.get_absolute_url()).content.decode()
    assert "File upload: 2" in page


def test_reimport_replaces_the_label_and_audits_it(login, workspace, owner):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    client = login(owner)
    _upload(client, eval_set, [_line(1, label="good")])
    _upload(client, eval_set, [_line(1, label="neutral")])
    assert Feedback.objects.get(eval_set=eval_set).rating == "neutral"
    actions = list(eval_set.label_changes.order_by("id").values_list("action", flat=True))
    assert actions == ["created", "changed"]


def test_archived_set_refuses_import_and_writes_nothing(login, workspace, owner):
    from traces.services import archive_eval_set

    eval_set = archive_eval_set(eval_set=EvalSetFactory(workspace=workspace, created_by=owner))
    response = _upload(login(owner), eval_set, [_line(1, label="good")])
    assert response.status_code == 400
    assert not Trace.objects.exists()


def test_viewer_cannot_import(login, workspace, viewer, owner):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner)
    assert _upload(login(viewer), eval_set, [_line(1, label="good")]).status_code == 403
