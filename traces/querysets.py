from django.db.models import Exists, OuterRef

from workspaces.querysets import WorkspaceQuerySet


class TraceQuerySet(WorkspaceQuerySet):
    def with_errors(self):
        return self.filter(has_error=True)

    def _feedback_exists(self, eval_set=None, user=None):
        from traces.models import Feedback

        feedback = Feedback.objects.filter(trace=OuterRef("pk"))
        if eval_set is not None:
            feedback = feedback.filter(eval_set=eval_set)
        if user is not None:
            feedback = feedback.filter(user=user)
        return Exists(feedback)

    def labelled(self, eval_set=None):
        """Traces with at least one label (in ``eval_set`` when given)."""
        return self.filter(self._feedback_exists(eval_set))

    def unlabelled(self, eval_set=None):
        return self.exclude(self._feedback_exists(eval_set))

    def in_eval_set(self, eval_set):
        """The eval set's traces: its saved filter, or its hand-picked traces in picking order."""
        from traces.filters import TraceFilters
        from traces.models import EvalSet, EvalSetTrace

        qs = self.for_workspace(eval_set.workspace_id)
        if eval_set.source_kind == EvalSet.SourceKind.FILTER:
            # The label filter describes the list, not the set: labelling must not empty the set.
            return TraceFilters.from_data(eval_set.saved_filter).apply(qs, label_state=False)
        picked = EvalSetTrace.objects.filter(eval_set=eval_set, trace=OuterRef("pk"))
        return qs.filter(Exists(picked))

    def pending_review(self, eval_set, user):
        """The eval set's traces this user has not labelled yet."""
        return self.in_eval_set(eval_set).exclude(self._feedback_exists(eval_set, user))


class EvalSetQuerySet(WorkspaceQuerySet):
    def active(self):
        return self.filter(archived_at__isnull=True)

    def archived(self):
        return self.filter(archived_at__isnull=False)


class FeedbackQuerySet(WorkspaceQuerySet):
    def for_eval_set(self, eval_set):
        return self.filter(eval_set=eval_set)
