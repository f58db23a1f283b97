"""Input the database cannot store, or nested too deep to walk, on every ingestion path.

Each is refused with a 4xx (per line for uploads, per trace for syncs) that says which
field, and nothing of the refused document is written. PostgreSQL refuses NUL and lone
surrogates outright; SQLite stores NUL, so the refusal is ours, and the same on both.
"""

import io
import json
import time

import pytest
from django.urls import reverse

from integrations import webhooks
from integrations.adapters.base import MAX_TRACE_DEPTH
from integrations.models import UploadRun
from integrations.uploads import execute_upload, ingest_objects
from tests.integrations.helpers import webhook_integration
from tests.traces.factories import trace_data
from traces.models import Trace
from workspaces.services import issue_token

pytestmark = pytest.mark.django_db


def _nested(levels: int):
    value = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def _with(n: int, **changes) -> dict:
    return {**trace_data(n), **changes}


def _step_output(n: int, output) -> dict:
    data = trace_data(n)
    data["steps"][2]["output"] = output
    return data


def _step_start(n: int, start_time: str) -> dict:
    data = trace_data(n)
    data["steps"][0]["start_time"] = start_time
    return data


# (case, JSON text of one trace, what the refusal must name)
BAD_TRACES = [
    ("surrogate in name", json.dumps(_with(1, name="a\ud800b")), "name"),
    ("surrogate in step", json.dumps(_step_output(1, "ok \udfff")), "steps[2].output"),
    ("surrogate in a key", json.dumps(_with(1, metadata={"k\ud800": 1})), "metadata"),
    ("NUL in input", json.dumps(_with(1, input={"text": "a\x00b"})), "input.text"),
    ("NUL in a tag", json.dumps(_with(1, tags=["ok", "\x00"])), "tags[1]"),
    (
        "nested 10,000 deep",
        json.dumps(_with(1, input="HOLE")).replace('"HOLE"', "[" * 10_000 + "]" * 10_000),
        "nested deeper than",
    ),
    ("nested 950 deep", json.dumps(_with(1, input=_nested(950))), "nested deeper than"),
    # 1e400 reads as infinity: refused as "cannot be encoded", without saying where.
    (
        "latency of 1e400",
        json.dumps(_with(1, latency_ms="HOLE")).replace('"HOLE"', "1e400"),
        "latency_ms: Infinity is not a JSON number",
    ),
]
IDS = [case for case, _, _ in BAD_TRACES]


@pytest.fixture
def token_client(api_client, workspace, owner):
    _, raw = issue_token(workspace=workspace, name="ci", created_by=owner, role="admin")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return api_client


@pytest.fixture
def integration(workspace):
    return webhook_integration(workspace)


@pytest.mark.parametrize(("case", "bad", "named"), BAD_TRACES, ids=IDS)
def test_api_refuses_the_batch_and_names_the_field(token_client, case, bad, named):
    body = f'{{"traces": [{json.dumps(trace_data(2))}, {bad}]}}'

    response = token_client.post(
        reverse("api-traces-ingest"), data=body, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert named in response.json()["detail"]
    assert not Trace.objects.exists()


@pytest.mark.parametrize(("case", "bad", "named"), BAD_TRACES, ids=IDS)
def test_webhook_refuses_the_body_and_names_the_field(client, integration, case, bad, named):
    body = f"[{json.dumps(trace_data(2))}, {bad}]".encode()
    now = str(int(time.time()))
    signature = webhooks.sign(secret=integration.secret, timestamp=now, body=body)

    response = client.post(
        f"/api/v1/integrations/{integration.pk}/webhook",
        data=body,
        content_type="application/json",
        headers={"X-Iofold-Timestamp": now, "X-Iofold-Signature": signature},
    )

    assert response.status_code == 400, response.content
    assert named in response.json()["detail"]
    assert not Trace.objects.exists()


@pytest.mark.parametrize(("case", "bad", "named"), BAD_TRACES, ids=IDS)
def test_upload_refuses_the_line_and_keeps_the_others(
    login, member, workspace, settings, tmp_path, case, bad, named
):
    settings.VAR_DIR = tmp_path
    upload = io.BytesIO(f"{json.dumps(trace_data(2))}\n{bad}\n".encode())
    upload.name = "traces.jsonl"

    response = login(member).post(
        reverse("integrations:upload", args=[workspace.slug]), {"file": upload}
    )

    assert response.status_code == 302
    run = execute_upload(run_id=UploadRun.objects.get().pk)
    [error] = run.report["errors"]
    assert error["line"] == 2
    assert named in error["error"]
    assert list(Trace.objects.values_list("external_id", flat=True)) == ["t2"]


# (case, one trace the schema refuses, what its error must say): each is rejected alone, as
# the API documents, and the traces beside it are stored.
REFUSED_TRACES = [
    # Valid ISO-8601 whose UTC time is past year 9999 or before year 1: an OverflowError, a
    # 500 (an upload's worker crashed at that line, leaving the lines after it unread).
    (
        "timestamp past year 9999 in UTC",
        _with(1, timestamp="9999-12-31T23:59:59-14:00"),
        "field 'timestamp' is outside the years 1 to 9999 in UTC",
    ),
    (
        "step start before year 1 in UTC",
        _step_start(1, "0001-01-01T00:00:00+14:00"),
        "steps[0]: field 'start_time' is outside the years 1 to 9999 in UTC",
    ),
    # An integer of 401 digits fits no float column: an OverflowError, a 500.
    ("latency of 401 digits", _with(1, latency_ms=10**400), "field 'latency_ms' is not a finite"),
    ("cost of -401 digits", _with(1, cost=-(10**400)), "field 'cost' is not a finite number"),
]
REFUSED_IDS = [case for case, _, _ in REFUSED_TRACES]


@pytest.mark.parametrize(("case", "bad", "error"), REFUSED_TRACES, ids=REFUSED_IDS)
def test_api_rejects_the_trace_alone(token_client, case, bad, error):
    body = json.dumps({"traces": [trace_data(2), bad]})

    response = token_client.post(
        reverse("api-traces-ingest"), data=body, content_type="application/json"
    )

    assert response.status_code == 201, response.content
    [rejected] = response.json()["errors"]
    assert rejected["index"] == 1 and error in rejected["error"]
    assert list(Trace.objects.values_list("external_id", flat=True)) == ["t2"]


@pytest.mark.parametrize(("case", "bad", "error"), REFUSED_TRACES, ids=REFUSED_IDS)
def test_upload_rejects_the_line_alone_and_reads_on(
    login, member, workspace, settings, tmp_path, case, bad, error
):
    settings.VAR_DIR = tmp_path
    lines = [trace_data(2), bad, trace_data(3)]
    upload = io.BytesIO("".join(json.dumps(line) + "\n" for line in lines).encode())
    upload.name = "traces.jsonl"

    login(member).post(reverse("integrations:upload", args=[workspace.slug]), {"file": upload})
    run = execute_upload(run_id=UploadRun.objects.get().pk)

    assert run.status == UploadRun.Status.SUCCEEDED
    [rejected] = run.report["errors"]
    assert rejected["line"] == 2 and error in rejected["error"]
    assert sorted(Trace.objects.values_list("external_id", flat=True)) == ["t2", "t3"]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        (_with(1, name="a\ud800b"), "name: contains a lone surrogate (\\ud800)"),
        (_step_output(1, {"x": "\x00"}), "steps[2].output.x: contains a NUL character"),
        (_with(1, input=_nested(MAX_TRACE_DEPTH)), f"nested deeper than {MAX_TRACE_DEPTH}"),
        (_with(1, cost=float("nan")), "field 'cost' is not a finite number"),
        (_step_output(1, [float("-inf")]), "steps[2].output[0]: -Infinity is not a JSON number"),
    ],
)
def test_synced_traces_are_checked_per_trace(workspace, bad, named):
    """Syncs and Langfuse exports reach the store without a request parser."""
    report = ingest_objects(
        workspace=workspace, source="api", items=enumerate([trace_data(2), bad])
    )

    assert [(line, named in reason) for line, reason in report.errors] == [(1, True)]
    assert list(Trace.objects.values_list("external_id", flat=True)) == ["t2"]


def test_a_trace_at_the_nesting_limit_is_accepted(workspace):
    within = _with(1, input=_nested(MAX_TRACE_DEPTH - 2))  # the trace and "input" are 2 more

    report = ingest_objects(workspace=workspace, source="api", items=enumerate([within]))

    assert report.errors == []
    assert Trace.objects.get().data["input"] == within["input"]


def test_a_langfuse_export_with_json_nested_10000_deep_in_a_string(workspace):
    export = {
        "id": "lf-1",
        "timestamp": "2026-11-20T11:00:00Z",
        "input": "[" * 10_000 + "]" * 10_000,
        "observations": [],
    }

    report = ingest_objects(workspace=workspace, source="upload", items=enumerate([export]))

    assert report.errors == []  # the string stays a string
    assert Trace.objects.get().data["input"] == export["input"]


@pytest.mark.parametrize("field", ["id", "parent_id"])
@pytest.mark.parametrize("value", [[], {}, ["s1-1"]])
def test_a_step_id_of_the_wrong_type_is_reported_not_a_500(token_client, field, value):
    data = trace_data(1)
    data["steps"][1][field] = value

    response = token_client.post(reverse("api-traces-ingest"), [data], format="json")

    assert response.status_code == 400
    assert f"field {field!r} has the wrong type" in response.json()["errors"][0]["error"]
    assert not Trace.objects.exists()


def test_an_id_longer_than_a_row_holds_is_reported_not_stored_as_another_trace(token_client):
    """Ids were cut to 255 characters: two traces whose ids share their first 255 became one
    row (a 500 on PostgreSQL within one batch, one trace silently replacing the other
    across batches)."""
    stem = "t" * 255
    first, second = trace_data(1), trace_data(2)
    first["id"], second["id"] = stem + "-first", stem + "-second"

    response = token_client.post(reverse("api-traces-ingest"), [first, second], format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [e["index"] for e in errors] == [0, 1]
    assert "field 'id' is longer than 255 characters" in errors[0]["error"]
    assert not Trace.objects.exists()

    fits = trace_data(3)
    fits["id"] = stem
    response = token_client.post(reverse("api-traces-ingest"), [fits], format="json")

    assert response.status_code == 201, response.content
    assert Trace.objects.get().external_id == stem


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"totalCost": 10**400}, None),  # no float holds it: an unknown cost
        ({"latency": 10**400}, None),
        (
            {"observations": [{"id": "o", "type": "GENERATION", "calculatedTotalCost": 10**400}]},
            None,
        ),
        ({"observations": [{"id": "o", "costDetails": {"total": -(10**400)}}]}, None),
        ({"observations": [{"id": "o", "startTime": 10**30}]}, "int is not an ISO-8601 date-time"),
    ],
)
def test_a_langfuse_export_with_numbers_no_float_holds(workspace, changes, error):
    """Each raised OverflowError or AttributeError out of the normaliser: the upload's worker
    died at that line, and the label import page answered 500."""
    export = {"id": "lf-1", "timestamp": "2026-11-20T11:00:00Z", "observations": [], **changes}

    report = ingest_objects(
        workspace=workspace, source="upload", items=enumerate([export, trace_data(2)], start=1)
    )

    stored = dict(Trace.objects.values_list("external_id", "cost"))
    if error is None:
        assert report.errors == []
        assert stored == {"lf-1": None, "t2": trace_data(2)["cost"]}
    else:
        [(line, reason)] = report.errors
        assert line == 1 and error in reason
        assert list(stored) == ["t2"]
