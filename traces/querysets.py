from workspaces.querysets import WorkspaceQuerySet


class TraceQuerySet(WorkspaceQuerySet):
    def with_errors(self):
        return self.filter(has_error=True)
