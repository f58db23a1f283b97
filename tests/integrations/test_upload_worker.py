"""Work accepted at once and done on a real Celery worker: an upload and a batch of traces."""

import io
import json

import pytest
from django.urls import reverse

from evals.models import Eval, EvalRun
from integrations.models import UploadRun
from tests.conftest import wait_for
from tests.factories import MembershipFactory, UserFactory
from tests.traces.factories import EvalSetFactory, trace_data
from traces.models import Trace
from workspaces.services import issue_token

pytestmark = pytest.mark.worker

REFUSAL_CODE = """def eval_fn(trace):
    return "cannot" not in str(trace.get("output")), "checked"
"""


def test_an_upload_is_ingested_by_the_worker_while_the_page_polls(
    celery_worker_process, transactional_db, login, member, workspace
):
    lines = [json.dumps(trace_data(n)) for n in range(1, 1201)] + ["{not json"]
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "big.jsonl"
    client = login(member)

    response = client.post(reverse("integrations:upload", args=[workspace.slug]), {"file": upload})

    run = UploadRun.objects.get()
    wait_for(
        lambda: UploadRun.objects.get(pk=run.pk).is_final, timeout=90, message="upload not done"
    )
    page = client.get(response["Location"], headers={"HX-Request": "true"}).content.decode()
    assert "1200 of 1201 lines imported from big.jsonl" in page
    assert Trace.objects.for_workspace(workspace).count() == 1200


def test_a_batch_of_sent_traces_is_judged_by_the_worker_and_polled(
    celery_worker_process, transactional_db, workspace, api_client
):
    eval = Eval.objects.create(
        workspace=workspace, eval_set=EvalSetFactory(workspace=workspace), version=1,
        code=REFUSAL_CODE,
    )  # fmt: skip
    user = MembershipFactory(workspace=workspace, user=UserFactory()).user
    token = issue_token(workspace=workspace, name="ci", created_by=user, role="member")[1]
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    traces = [trace_data(1), trace_data(2, output="I cannot help with that.")]

    response = api_client.post(f"/api/v1/evals/{eval.pk}/run", {"traces": traces}, format="json")

    assert response.status_code == 202
    wait_for(
        lambda: EvalRun.objects.get(pk=response.json()["id"]).status == "succeeded",
        timeout=90,
        message="the batch run did not finish on the worker",
    )
    polled = api_client.get(response["Location"]).json()
    assert polled["summary"] == {
        "total": 2, "passed": 1, "failed": 1, "errors": 0, "invalid": 0, "ok": False,
    }  # fmt: skip
    assert [r["passed"] for r in polled["results"]] == [True, False]
