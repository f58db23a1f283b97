"""Cross-platform evals: one eval set labels traces of four sources; one eval judges them all.

Traces come from Langfuse, LangSmith and OpenAI stored completions (each synced from its
fake server through the real sync) and from the OpenTelemetry SDK (posted to /v1/traces).
They are labelled in one eval set, an eval is generated offline and run over all of them,
and its verdicts go back to the sources that take them: scores to Langfuse, feedback to
LangSmith, nothing to OpenAI or OTLP, which have nowhere to put a verdict.
"""

from datetime import UTC, datetime, timedelta

import pytest

from evals.execution import scores
from evals.generation.services import start_generation
from evals.generation.worker import run_generation
from evals.models import Eval, EvalExecution
from integrations import services
from integrations.adapters import ADAPTERS, get_adapter_class
from integrations.models import Integration
from tests.evals.builders import BAD, GOOD
from tests.factories import MembershipFactory, UserFactory
from tests.fakes.langfuse_server import FakeLangfuse, generate_trace
from tests.fakes.langsmith_server import API_KEY as LANGSMITH_KEY
from tests.fakes.langsmith_server import FakeLangSmith
from tests.fakes.openai_store_server import API_KEY as OPENAI_KEY
from tests.fakes.openai_store_server import openai_store  # noqa: F401 - a fixture
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY
from tests.integrations.otlp_helpers import Recorder, api_token, protobuf_body, semconv_agent_trace
from tests.traces.factories import EvalSetFactory
from traces.models import Feedback, Trace

pytestmark = pytest.mark.django_db

# Two good and two bad answers per source: the offline learner finds the refusal.
ANSWERS = [GOOD, BAD, GOOD, BAD]
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def langfuse():
    fake = FakeLangfuse(traces=0, base_time=START).start()
    for i, answer in enumerate(ANSWERS):
        rows = generate_trace(i, observations=3, start=START + timedelta(minutes=i))
        rows[0]["output"] = f'{{"answer": "{answer}"}}'
        fake.add_trace(rows)
    yield fake
    fake.stop()


@pytest.fixture
def langsmith():
    fake = FakeLangSmith().start()
    for i, answer in enumerate(ANSWERS):
        root_id = fake.add_trace(START + timedelta(minutes=i), i)
        fake.runs[root_id]["outputs"] = {"answer": answer}
    yield fake
    fake.stop()


def sync(integration: Integration) -> None:
    run = services.start_sync(integration=integration)
    services.run_sync(run_id=run.pk, adapter=services.get_adapter(integration))
    run.refresh_from_db()
    assert run.status == "succeeded", run.error


def connect_and_sync(workspace, langfuse, langsmith, openai_store) -> None:  # noqa: F811
    for options in (
        {"kind": "langfuse", "host": langfuse.url, "public_key": PUBLIC_KEY},
        {"kind": "langsmith", "host": langsmith.url, "options": {"project": "default"}},
        {"kind": "openai", "host": openai_store.base_url, "public_key": ""},
    ):
        secret = {"langfuse": SECRET_KEY, "langsmith": LANGSMITH_KEY}.get(
            options["kind"], OPENAI_KEY
        )
        integration = services.create_integration(
            workspace=workspace, name=options["kind"], secret_key=secret, **options
        )
        sync(integration)


def receive_otlp(client, workspace) -> None:
    token = api_token(workspace)
    for answer in ANSWERS:
        recorder = Recorder()
        semconv_agent_trace(recorder, answer=answer)
        response = client.post(
            "/v1/traces",
            protobuf_body(recorder.take()),
            content_type="application/x-protobuf",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 200, response.content


def refuses(trace: Trace) -> bool:
    return "cannot" in str(trace.data.get("output"))


def test_one_eval_set_over_four_sources_sends_verdicts_back_where_they_are_taken(
    client,
    workspace,
    owner,
    login,
    langfuse,
    langsmith,
    openai_store,  # noqa: F811
):
    for i, answer in enumerate(ANSWERS):
        openai_store.add(f"chatcmpl-{i}", created=int(START.timestamp()) + i, answer=answer)
    connect_and_sync(workspace, langfuse, langsmith, openai_store)
    receive_otlp(client, workspace)

    traces = list(Trace.objects.for_workspace(workspace))
    by_source = {}
    for trace in traces:
        by_source.setdefault(trace.source, []).append(trace)
    assert {s: len(ts) for s, ts in by_source.items()} == {
        "langfuse": 4,
        "langsmith": 4,
        "openai": 4,
        "otlp": 4,
    }
    assert all(sum(map(refuses, ts)) == 2 for ts in by_source.values())

    # One eval set, labelled across every source, sending verdicts back where it can.
    user = MembershipFactory(workspace=workspace, user=UserFactory()).user
    eval_set = EvalSetFactory(
        workspace=workspace,
        name="Does not refuse",
        criteria="The assistant must not refuse.",
        score_to_langfuse=True,
    )
    for trace in traces:
        Feedback.objects.create(
            workspace=workspace,
            trace=trace,
            eval_set=eval_set,
            user=user,
            rating="negative" if refuses(trace) else "positive",
        )

    generation = run_generation(generation_id=start_generation(eval_set=eval_set).pk)

    assert generation.status == "succeeded", generation.error
    eval = generation.result
    assert eval.provider == "offline" and eval.status == Eval.Status.ACTIVE
    verdicts = EvalExecution.objects.filter(eval=eval).select_related("trace")
    assert {(v.trace.source, v.passed) for v in verdicts} == {
        (source, passed)
        for source in ("langfuse", "langsmith", "openai", "otlp")
        for passed in (True, False)
    }
    assert all(v.passed is not refuses(v.trace) for v in verdicts)
    assert len(verdicts) == 16

    report = scores.push_pending_scores()

    assert (report.pushed, report.failed) == (8, 0)
    sent_to_langfuse = {s["traceId"]: s["value"] for s in langfuse.scores.values()}
    assert sent_to_langfuse == {t.external_id: float(not refuses(t)) for t in by_source["langfuse"]}
    assert {s["name"] for s in langfuse.scores.values()} == {"Does not refuse"}
    sent_to_langsmith = {f["run_id"]: f["score"] for f in langsmith.feedback.values()}
    assert sent_to_langsmith == {t.external_id: int(not refuses(t)) for t in by_source["langsmith"]}
    assert {f["key"] for f in langsmith.feedback.values()} == {"Does not refuse"}
    # OpenAI and OTLP take no verdicts: theirs are kept in iofold, not pushed, not failed.
    assert {kind: get_adapter_class(kind).capabilities.push_back for kind in ADAPTERS} == {
        "langfuse": True,
        "langsmith": True,
        "openai": False,
        "openai_agents": False,
        "otlp": False,
    }
    assert Integration.objects.get(workspace=workspace, kind="otlp").receives
    for source in ("openai", "otlp"):
        kept = verdicts.filter(trace__source=source)
        assert kept.count() == 4
        assert not kept.filter(score_pushed_at__isnull=False).exists()
        assert not kept.exclude(score_error="").exists()
    pushed = verdicts.filter(score_pushed_at__isnull=False)
    assert set(pushed.values_list("trace__source", flat=True)) == {"langfuse", "langsmith"}
    assert scores.push_pending_scores().pushed == 0  # all delivered: nothing left to resend

    # The dashboard lists the sources verdicts go back to, with what each received.
    html = login(owner).get(f"/w/{workspace.slug}/evals/dashboard/").content.decode()
    table = html.split('data-testid="score-push-status"')[1].split("</table>")[0]
    rows = table.split("<tr>")[2:]
    assert [row.split("</a>")[0].rsplit(">", 1)[1] for row in rows] == ["langfuse", "langsmith"]
    assert all("<td>4</td>" in row for row in rows)
