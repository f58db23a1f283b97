from workspaces.querysets import WorkspaceQuerySet


class EvalQuerySet(WorkspaceQuerySet):
    def active(self):
        return self.filter(status="active")

    def for_eval_set(self, eval_set):
        return self.filter(eval_set=eval_set)


class GenerationQuerySet(WorkspaceQuerySet):
    def unfinished(self):
        return self.filter(status__in=["queued", "running"])


class EvalRunQuerySet(WorkspaceQuerySet):
    def unfinished(self):
        return self.filter(status__in=["queued", "running"])


class EvalExecutionQuerySet(WorkspaceQuerySet):
    pass


class ProviderSettingsQuerySet(WorkspaceQuerySet):
    pass
