"""Demo data: a generated eval (offline synthesiser) for the demo workspace's eval set."""

from evals.generation.provider_settings import DEFAULT_MODELS, ProviderChoice
from evals.generation.worker import generate_now
from evals.models import Eval, Generation, Provider, RunStatus
from traces.models import EvalSet

OFFLINE = ProviderChoice(provider=Provider.OFFLINE, model=DEFAULT_MODELS[Provider.OFFLINE])


def seed_demo_eval(eval_set: EvalSet, *, user=None) -> Eval | None:
    """Generate the set's first eval with the offline synthesiser, unless it has one already."""
    existing = Eval.objects.for_workspace(eval_set.workspace_id).filter(eval_set=eval_set).first()
    if existing is not None:
        return existing
    generation = generate_now(eval_set=eval_set, user=user, choice=OFFLINE)
    if generation.status != RunStatus.SUCCEEDED:
        return None
    return Generation.objects.get(pk=generation.pk).result
