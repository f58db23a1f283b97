from iofold.lib.runs import BackgroundRunQuerySet
from workspaces.querysets import WorkspaceQuerySet


class EvalQuerySet(WorkspaceQuerySet):
    def active(self):
        from evals.models import EvalStatus  # evals.models imports this module

        return self.filter(status=EvalStatus.ACTIVE)

    def for_eval_set(self, eval_set):
        return self.filter(eval_set=eval_set)


class GenerationQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class EvalRunQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class EvalExecutionQuerySet(WorkspaceQuerySet):
    pass


class ProviderSettingsQuerySet(WorkspaceQuerySet):
    pass
