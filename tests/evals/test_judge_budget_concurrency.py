"""Two runs of judge evals at once, each on its own thread and connection, against one
monthly budget: each was handed what was left when it started, yet together they never
spend past the budget (evals.judging.ledger)."""

import threading

import pytest
from django.db import connection

from evals.execution.runs import execute_run, start_run
from evals.judging import runs as judging_runs
from evals.models import EvalRun
from tests.evals.builders import labelled_set, make_eval, use_fake_openai
from tests.evals.test_judges import JUDGE_CODE, KEY, MODEL

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_runs_at_once_never_spend_past_the_monthly_budget(
    workspace, fake_llm, settings, monkeypatch
):
    # Every answer is as long as a call may be (8 tokens) and only answers are priced:
    # a call costs one dollar, exactly what it holds while it is made.
    settings.IOFOLD_LLM_PRICES = {MODEL: {"input": "0", "output": "125000"}}
    settings.IOFOLD_JUDGE_MAX_USD = 1000.0
    settings.IOFOLD_JUDGE_MAX_OUTPUT_TOKENS = 8
    for _ in range(17):
        fake_llm.push_text("yes", output_tokens=8)
    use_fake_openai(workspace, fake_llm, api_key=KEY, model=MODEL)
    eval_set, traces = labelled_set(workspace, good=9, bad=8)
    eval = make_eval(eval_set, version=1, code=JUDGE_CODE, kind="judge")
    first = start_run(eval=eval, trace_ids=[traces[0].pk], trigger="manual", enqueue=False)
    first = execute_run(run_id=first.pk)
    assert first.cost_usd == 1
    # Room for 12 more calls: either run's eight fit, both runs' sixteen do not.
    budget = 13
    use_fake_openai(workspace, fake_llm, api_key=KEY, model=MODEL, monthly_budget_usd=budget)
    runs = [
        start_run(eval=eval, trace_ids=[t.pk for t in part], trigger="automatic", enqueue=False)
        for part in (traces[1:9], traces[9:17])
    ]

    # Both runs have looked at what is left before either spends anything.
    looked = threading.Barrier(2)
    capped = judging_runs.capped_budget

    def capped_budget_then_wait(**kwargs):
        budget = capped(**kwargs)
        looked.wait(60)
        return budget

    monkeypatch.setattr(judging_runs, "capped_budget", capped_budget_then_wait)
    failures = []

    def execute(run_id):
        try:
            execute_run(run_id=run_id)
        except BaseException as error:
            failures.append(error)
            looked.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=execute, args=(run.pk,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures and not any(thread.is_alive() for thread in threads)

    done = list(EvalRun.objects.filter(pk__in=[r.pk for r in runs]))
    spent = first.cost_usd + sum(run.cost_usd for run in done)
    assert spent <= budget, f"spent ${spent} of a ${budget} monthly budget"
    assert spent == budget  # the budget is spent to its last dollar, not left unused
    stopped = [run for run in done if run.status == "failed"]
    assert stopped and all("monthly judge budget" in run.error for run in stopped)
