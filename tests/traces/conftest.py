import pytest

from tests.traces.factories import EvalSetFactory, TraceFactory
from traces.services import add_traces_to_eval_set


@pytest.fixture
def traces(workspace):
    return [TraceFactory(workspace=workspace) for _ in range(12)]


@pytest.fixture
def eval_set(workspace, owner, traces):
    eval_set = EvalSetFactory(workspace=workspace, created_by=owner, target_labels=10)
    add_traces_to_eval_set(eval_set=eval_set, trace_ids=[t.pk for t in traces])
    return eval_set
