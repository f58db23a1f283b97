from dataclasses import replace

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models
from django.db.models import Exists, F, OuterRef, Q
from django.urls import reverse

from integrations.models import Integration
from iofold.lib.runs import BackgroundRun, BackgroundRunQuerySet, RunStatus
from traces.constants import MAX_CRITERIA_CHARS, TraceSource
from traces.fields import PayloadField
from workspaces.models import WorkspaceOwned
from workspaces.querysets import WorkspaceQuerySet

# The querysets share this module with the models: they filter through one another.


class TraceQuerySet(WorkspaceQuerySet):
    def with_keys(self, source_key: str, external_ids):
        """These traces of one source, by their natural key, in no particular order.

        Unordered on purpose: asked for newest first (the model's ordering), SQLite walks
        the workspace's whole list index to spare itself a sort rather than look each key
        up in the unique index, which costs a scan of the workspace's traces per batch.
        """
        return self.filter(source_key=source_key, external_id__in=external_ids).order_by()

    def with_errors(self):
        return self.filter(has_error=True)

    def present(self):
        """Traces not being deleted (traces.deletions hides them at once), alone or with an
        integration whose deletion was asked to take them: that run is marked, not its
        traces, so the request stays short. An integration deleted alone keeps them here."""
        taking = DeletionRun.objects.filter(delete_traces=True, integration__isnull=False)
        return self.filter(deletion__isnull=True).exclude(
            integration__in=taking.values("integration")
        )

    def _feedback_exists(self, eval_set=None, user=None):
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

        qs = self.for_workspace(eval_set.workspace_id).present()
        saved = None
        if eval_set.source_kind == EvalSet.SourceKind.FILTER:
            saved = TraceFilters.from_data(eval_set.saved_filter, keep_unknown_source=True)
        if eval_set.unit == EvalSet.Unit.CONVERSATION:
            # One item per conversation: its anchor (first) turn stands for it.
            conversations = Conversation.objects.filter(anchor=OuterRef("pk"))
            if saved:
                conversations = _matching_conversations(conversations, saved)
            qs = qs.filter(Exists(conversations))
            if saved is not None:
                return qs
        if saved is not None:
            # The label filter describes the list, not the set: labelling must not empty the set.
            return saved.apply(qs, label_state=False)
        picked = EvalSetTrace.objects.filter(eval_set=eval_set, trace=OuterRef("pk"))
        return qs.filter(Exists(picked))

    def pending_review(self, eval_set, user):
        """The eval set's traces this user has not labelled yet."""
        return self.in_eval_set(eval_set).exclude(self._feedback_exists(eval_set, user))


def _matching_conversations(conversations, saved):
    """Narrow ``conversations`` to those a conversation set's saved filter describes.

    Errors read the whole conversation (with errors: some turn failed; without: none did);
    any other filter (words, tag, name, dates, source) matches when one of its turns does.
    The label filter describes the list, not the set: labelling must not empty the set.
    """
    if saved.has_error is not None:
        conversations = conversations.filter(has_error=saved.has_error)
    per_turn = replace(saved, has_error=None, label="")
    if per_turn:
        turns = Trace.objects.filter(conversation=OuterRef("pk"))
        conversations = conversations.filter(Exists(per_turn.apply(turns, label_state=False)))
    return conversations


class EvalSetQuerySet(WorkspaceQuerySet):
    def for_workspace(self, workspace, *, deleting: bool = False):
        """The workspace's eval sets, but for those being deleted (nobody acts on them);
        with ``deleting``, those too (a second request to delete one finds its run)."""
        sets = super().for_workspace(workspace)
        return sets if deleting else sets.filter(deletion__isnull=True)

    def active(self):
        return self.filter(archived_at__isnull=True)

    def archived(self):
        return self.filter(archived_at__isnull=False)


class FeedbackQuerySet(WorkspaceQuerySet):
    def for_eval_set(self, eval_set):
        """The set's rows, scoped to its workspace like every tenant query."""
        return self.for_workspace(eval_set.workspace_id).filter(eval_set=eval_set)


class ConversationQuerySet(WorkspaceQuerySet):
    def with_turns(self):
        """Conversations holding a turn: its turns may all move to another one."""
        return self.filter(turn_count__gt=0)

    def complete(self):
        return self.filter(completed_at__isnull=False)

    def open(self):
        return self.filter(completed_at__isnull=True)


class Conversation(WorkspaceOwned):
    """Traces of one source sharing a session / thread / conversation id, as turns.

    Kept up to date by ``traces.conversations`` as traces arrive; complete once idle long
    enough or after an explicit end marker, open again when a later turn arrives.
    """

    integration = models.ForeignKey(
        Integration, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=20)  # its traces' source (Trace.Source)
    # The natural key: the traces' own namespace (``Trace.source_key``) and session id.
    source_key = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    turn_count = models.PositiveIntegerField(default=0)
    has_error = models.BooleanField(default=False)
    cost = models.FloatField(null=True, blank=True)
    # The timestamp of the turn that carried an end marker; cleared when a later turn comes.
    ended_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # How many times it became complete: a resumed conversation completes again, and so does
    # one whose turns changed after it completed, once they settle.
    completion_count = models.PositiveIntegerField(default=0)
    # When an ingest last changed its turns (added, changed, moved in or out): it completes
    # only once none has arrived for the idle time either (late pages, spans in pieces).
    changed_at = models.DateTimeField(null=True, blank=True)
    # The first turn stored, set once: in a conversation eval set the conversation's labels
    # and verdicts are kept on this trace, so the review, majority, metrics and matrix of
    # trace sets apply unchanged (one item per conversation).
    anchor = models.ForeignKey(
        "Trace", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-last_activity_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "source_key", "external_id"],
                name="traces_conversation_one_per_source_id",
            )
        ]
        indexes = [
            models.Index(
                fields=["workspace", "-last_activity_at", "-id"], name="conv_ws_activity_idx"
            ),
            # The completion sweep reads open conversations by last activity.
            models.Index(
                fields=["completed_at", "last_activity_at"], name="conv_open_activity_idx"
            ),
            # ... and complete ones whose turns changed since, by when they changed.
            models.Index(
                fields=["changed_at"],
                condition=Q(changed_at__gt=F("completed_at")),
                name="conv_changed_since_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def is_complete(self) -> bool:
        return self.completed_at is not None

    @property
    def is_settling(self) -> bool:
        """Complete, with turns changed since (late, changed, moved): it completes again,
        to be judged again if its content changed, once none has arrived for the idle time."""
        return (
            self.completed_at is not None
            and self.changed_at is not None
            and self.changed_at > self.completed_at
        )

    @property
    def span_seconds(self) -> float:
        """From its first turn's start to its latest turn's start."""
        return (self.last_activity_at - self.started_at).total_seconds()


# A trace written again after it was created: its time or source may have changed. The
# comparison matrix's raw SQL spells it out (evals.matrix.index._rewritten), as the partial
# index's predicate, so that PostgreSQL uses the index.
REWRITTEN = ~Q(updated_at=F("created_at"))


class Trace(WorkspaceOwned):
    """One normalised trace (DESIGN.md); ``data`` is exactly what an eval receives."""

    Source = TraceSource

    integration = models.ForeignKey(
        Integration, on_delete=models.SET_NULL, null=True, blank=True, related_name="traces"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    # "i<integration id>" for synced traces, else the source: with external_id, the natural
    # key that makes every sync, upload and webhook an idempotent upsert.
    source_key = models.CharField(max_length=40)
    external_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255, blank=True)
    timestamp = models.DateTimeField()
    # The text written, as evals read it (traces.fields).
    data = PayloadField()
    # Denormalised from ``data`` for filtering and listing without reading payloads.
    search_text = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    has_error = models.BooleanField(default=False)
    step_count = models.PositiveIntegerField(default=0)
    tool_call_count = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True)
    content_hash = models.CharField(max_length=64)
    # Set from ``data["session_id"]`` at ingest (traces.conversations). Indexed by
    # trace_conversation_turns_idx, which leads with it.
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="turns",
        db_index=False,
    )
    # Set when someone deletes it: hidden at once, removed by that run's worker in batches.
    # Indexed only where set (trace_deletion_idx), so ingest never writes that index.
    deletion = models.ForeignKey(
        "DeletionRun",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )

    objects = TraceQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "source_key", "external_id"],
                name="traces_trace_one_per_source_id",
            )
        ]
        indexes = [
            # Keyset pagination of the trace list, newest first. The source is included
            # for the comparison matrix, which reads every labelled trace's time and
            # source: index-only, not from the table's rows, payloads and all.
            models.Index(
                fields=["workspace", "-timestamp", "-id"],
                include=["source"],
                name="trace_ws_time_source_idx",
            ),
            models.Index(fields=["workspace", "name"], name="trace_ws_name_idx"),
            # Traces ingested since a time (the operations dashboard's recent traces),
            # counted from the index alone rather than from every trace row of the
            # workspace, payloads and all.
            models.Index(fields=["workspace", "created_at"], name="trace_ws_created_idx"),
            # Traces written again after they were created (a re-import, a sync's update),
            # newest change last: the comparison matrix's cache stamp and its patches read
            # them. New traces, written once (created_at = updated_at), never enter it, so
            # ingestion neither changes the stamp nor adds to the index.
            models.Index(
                fields=["workspace", "updated_at"],
                condition=REWRITTEN,
                name="trace_ws_rewritten_idx",
            ),
            # A conversation's turns in order, with the figures every ingest recomputes
            # (traces.conversations) as key columns, not INCLUDE, which SQLite ignores: read
            # from the index alone, not from rows whose payload SQLite must step over to
            # reach has_error and cost (a scan of a conversation's payloads per batch).
            models.Index(
                fields=["conversation", "timestamp", "id", "has_error", "cost"],
                name="trace_conversation_turns_idx",
            ),
            models.Index(
                fields=["deletion"],
                condition=Q(deletion__isnull=False),
                name="trace_deletion_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id


class EvalSet(WorkspaceOwned):
    """Traces a team labels against written criteria; the evals app learns from its labels."""

    class SourceKind(models.TextChoices):
        FILTER = "filter", "Saved trace filter"
        MANUAL = "manual", "Hand-picked traces"

    class Unit(models.TextChoices):
        TRACE = "trace", "Trace"
        CONVERSATION = "conversation", "Conversation"

    name = models.CharField(max_length=200)
    criteria = models.TextField(
        help_text="In plain words: what makes a trace good.",
        validators=[MaxLengthValidator(MAX_CRITERIA_CHARS)],
    )
    target_labels = models.PositiveIntegerField(default=10)
    # Traces every assigned reviewer labels, so their agreement (κ) can be measured.
    agreement_target = models.PositiveIntegerField(default=0)
    source_kind = models.CharField(
        max_length=10, choices=SourceKind.choices, default=SourceKind.MANUAL
    )
    # The trace-list query string, parsed by ``traces.filters.TraceFilters``.
    saved_filter = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # What is reviewed and judged: single traces, or whole conversations.
    unit = models.CharField(max_length=12, choices=Unit.choices, default=Unit.TRACE)
    # A conversation counts as complete after this long without a new turn.
    conversation_idle_minutes = models.PositiveIntegerField(default=30)
    # Read by the evals app when it sends verdicts back to the traces' sources (Langfuse
    # scores, LangSmith feedback); the name predates the other sources.
    score_to_langfuse = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    traces = models.ManyToManyField(Trace, through="EvalSetTrace", related_name="eval_sets")
    # Set when someone deletes it: hidden at once (``for_workspace``), removed by a worker.
    deletion = models.ForeignKey(
        "DeletionRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = EvalSetQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name"],
                condition=models.Q(archived_at__isnull=True),
                name="traces_evalset_unique_active_name",
            ),
            models.CheckConstraint(
                condition=models.Q(target_labels__gte=1), name="traces_evalset_target_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("traces:evalset_detail", kwargs={"slug": self.workspace.slug, "pk": self.pk})

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class EvalSetTrace(WorkspaceOwned):
    """A hand-picked trace in an eval set; the review queue follows the order of picking."""

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="memberships")
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="+")

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["eval_set", "trace"], name="traces_evalsettrace_one_per_set"
            )
        ]

    def __str__(self) -> str:
        return f"{self.trace_id} in {self.eval_set_id}"


class Feedback(WorkspaceOwned):
    """One reviewer's label of one trace for one eval set."""

    class Rating(models.TextChoices):
        POSITIVE = "positive", "Good"
        NEGATIVE = "negative", "Bad"
        NEUTRAL = "neutral", "Neutral"

    class Origin(models.TextChoices):
        # Where the label came from: the per-set counts tell a team how much is its own work.
        REVIEW = "review", "Reviewed in iofold"
        UPLOAD = "upload", "File upload"
        LANGFUSE = "langfuse", "Langfuse score"
        LANGSMITH = "langsmith", "LangSmith feedback"

    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="feedback")
    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="trace_feedback"
    )
    rating = models.CharField(max_length=10, choices=Rating.choices)
    note = models.TextField(blank=True)
    origin = models.CharField(max_length=20, choices=Origin.choices, default=Origin.REVIEW)

    objects = FeedbackQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["trace", "eval_set", "user"], name="traces_feedback_one_per_user"
            ),
            models.CheckConstraint(
                condition=models.Q(rating__in=["positive", "negative", "neutral"]),
                name="traces_feedback_rating_valid",
            ),
        ]
        indexes = [
            # Progress, summaries and label resolution group one eval set's labels by trace;
            # the matrix reads every label of the set with it, index-only and in trace order
            # (PostgreSQL; elsewhere a plain index on the key).
            models.Index(
                fields=["eval_set", "trace"],
                include=["rating", "id"],
                name="feedback_set_trace_cover_idx",
            ),
            # The matrix's cache stamp (count, newest, sum of ids) and its patch (labels
            # changed since): index-only on PostgreSQL.
            models.Index(
                fields=["eval_set", "updated_at"], include=["id"], name="feedback_set_updated_idx"
            ),
            # The set's activity feed: its newest labels, without sorting all of them.
            models.Index(fields=["eval_set", "-created_at"], name="feedback_set_created_idx"),
            # Undo finds the reviewer's latest label in the set.
            models.Index(fields=["eval_set", "user", "-updated_at"], name="feedback_set_user_idx"),
            # The review queue skips the reviewer's labelled traces in trace order.
            models.Index(fields=["eval_set", "user", "trace"], name="feedback_set_user_trace_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} rated {self.trace_id} {self.rating}"


class LabelChange(WorkspaceOwned):
    """One change to a label, kept after the label itself is changed or removed."""

    class Action(models.TextChoices):
        CREATED = "created", "Labelled"
        CHANGED = "changed", "Changed"
        REMOVED = "removed", "Removed"
        # By iofold: its conversation's first turn moved to another conversation, and the
        # label went to the conversation's new first turn (traces.conversations).
        MOVED = "moved", "Moved"

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="label_changes")
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="+")
    # Whose label it is; ``changed_by`` differs when an admin edits someone else's label.
    labeller = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    origin = models.CharField(max_length=20, choices=Feedback.Origin.choices)
    rating_before = models.CharField(max_length=10, blank=True)
    rating_after = models.CharField(max_length=10, blank=True)
    note_before = models.TextField(blank=True)
    note_after = models.TextField(blank=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["eval_set", "-created_at"], name="labelchange_set_time_idx")
        ]

    def __str__(self) -> str:
        return f"{self.changed_by} {self.action} {self.trace_id}"


class LabelAssignment(WorkspaceOwned):
    """A trace of an eval set put in one reviewer's queue (round-robin or by hand)."""

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="assignments")
    trace = models.ForeignKey(Trace, on_delete=models.CASCADE, related_name="+")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="label_assignments"
    )
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["trace_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["eval_set", "trace", "assignee"], name="traces_assignment_one_per_reviewer"
            )
        ]
        indexes = [
            # "My queue" and the review card read one reviewer's assignments in trace order.
            models.Index(fields=["assignee", "eval_set", "trace"], name="assignment_user_set_idx")
        ]

    def __str__(self) -> str:
        return f"{self.trace_id} to {self.assignee_id}"


class ScoreImportRunQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class ScoreImportRun(BackgroundRun, WorkspaceOwned):
    """Langfuse scores or LangSmith feedback turned into an eval set's labels by a worker:
    reading up to 5,000 traces' scores from a vendor is too slow for a web request."""

    Status = RunStatus

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="score_imports")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="+")
    # The labels are recorded as this person's (marked with their origin).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    score_name = models.CharField(max_length=200)
    mapping = models.TextField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    # Labels recorded so far of ``total`` scores that map to one: the progress bar.
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    # ScoreImportReport.as_dict() once finished.
    report = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = ScoreImportRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Score import #{self.pk} {self.score_name} ({self.status})"


class DeletionRunQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class DeletionRun(BackgroundRun, WorkspaceOwned):
    """An eval set or traces deleted by a worker, in batches (traces.deletions).

    With 100,000 traces, deleting in the web request outlived the server's timeout and held
    its locks throughout; what is being deleted is hidden at once instead.
    """

    Status = RunStatus

    class Kind(models.TextChoices):
        EVAL_SET = "eval_set", "Eval set"
        TRACES = "traces", "Traces"
        INTEGRATION = "integration", "Integration"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The integration an INTEGRATION run deletes (its traces kept); unset once it is gone.
    integration = models.ForeignKey(
        Integration, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Asked for explicitly: the run deletes the integration's traces instead of unlinking.
    delete_traces = models.BooleanField(default=False)
    # What it deletes, in words, for its page once the rows are gone.
    name = models.CharField(max_length=300)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    # Rows deleted so far of ``total``: the progress bar.
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = DeletionRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Deletion #{self.pk} of {self.name} ({self.status})"


class ResponseWait(WorkspaceOwned):
    """A trace of an Agents SDK source whose response content waits for a working key.

    Recorded while reading is stopped (the key was rejected, ``traces.agents_responses``);
    saving a new key reads these again in the background and deletes them as they are read.
    """

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    external_id = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "external_id"], name="traces_response_wait_once"
            )
        ]

    def __str__(self) -> str:
        return f"Response content of {self.external_id} waiting ({self.integration_id})"
