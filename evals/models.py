from django.conf import settings
from django.db import models
from django.db.models import F
from django.urls import reverse

from evals.generation.pricing import unpriced_note
from iofold.lib.fields import EncryptedTextField
from iofold.lib.runs import BackgroundRun, BackgroundRunQuerySet, RunStatus
from traces.models import Conversation, EvalSet, Trace
from workspaces.models import Workspace, WorkspaceOwned
from workspaces.querysets import WorkspaceQuerySet

# The querysets share this module with the models: they filter by the models' choices.


class EvalQuerySet(WorkspaceQuerySet):
    def active(self):
        return self.filter(status=EvalStatus.ACTIVE)

    def for_eval_set(self, eval_set):
        """The set's rows, scoped to its workspace like every tenant query."""
        return self.for_workspace(eval_set.workspace_id).filter(eval_set=eval_set)


class GenerationQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class EvalRunQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class EvalRunChunkQuerySet(BackgroundRunQuerySet, WorkspaceQuerySet):
    pass


class EvalExecutionQuerySet(WorkspaceQuerySet):
    pass


class ProviderSettingsQuerySet(WorkspaceQuerySet):
    pass


class Provider(models.TextChoices):
    OFFLINE = "offline", "Offline synthesiser"
    OPENAI = "openai", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic"


class ProviderSettings(WorkspaceOwned):
    """The workspace's choice of generation provider; the key is encrypted at rest."""

    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.OFFLINE)
    model = models.CharField(max_length=100, blank=True)
    base_url = models.URLField(blank=True)
    api_key = EncryptedTextField(blank=True)
    # Month-to-date spend on judge calls at which automatic runs stop (None: no limit).
    monthly_budget_usd = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)

    objects = ProviderSettingsQuerySet.as_manager()

    class Meta:
        verbose_name = "provider settings"
        verbose_name_plural = "provider settings"
        constraints = [
            models.UniqueConstraint(fields=["workspace"], name="evals_providersettings_one")
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} for {self.workspace}"


class EvalKind(models.TextChoices):
    """What decides the verdict; all three are eval_fn(trace) -> (bool, str) code."""

    CODE = "code", "Code"
    JUDGE = "judge", "LLM judge"
    HYBRID = "hybrid", "Hybrid (code, then a judge)"


class EvalStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    # Judges new traces beside the active version; its verdicts never leave iofold.
    SHADOW = "shadow", "Shadow"
    ARCHIVED = "archived", "Archived"


class Eval(WorkspaceOwned):
    """One version of an eval function for an eval set; code never changes once saved."""

    # Defined at module level so that ``Meta`` (which cannot see this class's body) and
    # the queryset can name it too.
    Status = EvalStatus

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="evals")
    version = models.PositiveIntegerField()
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    kind = models.CharField(max_length=10, choices=EvalKind.choices, default=EvalKind.CODE)
    code = models.TextField()
    # How it was made: provider, model, the exact prompt sent, tokens and cost.
    provider = models.CharField(max_length=20, choices=Provider.choices, blank=True)
    model = models.CharField(max_length=100, blank=True)
    origin = models.CharField(max_length=20, default="generated")  # generated|refined|edited
    prompt = models.TextField(blank=True)
    prompt_version = models.CharField(max_length=20, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, null=True, blank=True)
    description = models.TextField(blank=True)
    # {"training": Agreement.as_dict(), "heldout": ... | None, "method": "...", ...}
    metrics = models.JSONField(default=dict, blank=True)
    agreement = models.FloatField(null=True, blank=True)  # the headline figure shown in lists
    labels_tested = models.PositiveIntegerField(default=0)
    low_confidence = models.BooleanField(default=False)
    low_confidence_reason = models.TextField(blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # When this version last went into shadow: its comparison counts labels from then on.
    shadow_since = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = EvalQuerySet.as_manager()

    class Meta:
        ordering = ["eval_set", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["eval_set", "version"], name="evals_eval_unique_version"
            ),
            models.UniqueConstraint(
                fields=["eval_set"],
                condition=models.Q(status=EvalStatus.ACTIVE),
                name="evals_eval_one_active_per_set",
            ),
            models.UniqueConstraint(
                fields=["eval_set"],
                condition=models.Q(status=EvalStatus.SHADOW),
                name="evals_eval_one_shadow_per_set",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.eval_set.name} v{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("evals:detail", kwargs={"slug": self.workspace.slug, "pk": self.pk})

    # A version generation stored before measuring it on many labels names its generation
    # under this key of ``metrics`` until it is measured (evals.generation.services).
    MEASURING = "measuring_generation"

    @property
    def being_measured(self) -> bool:
        return self.MEASURING in (self.metrics or {})

    def _metric_parts(self) -> tuple[dict, dict, bool]:
        """Return (held-out, training, no reliable eval) from metrics or list annotations."""
        if "metrics" in self.get_deferred_fields():
            # Lists defer the JSON and annotate these parts (evals.versions.selectors).
            return (
                getattr(self, "list_heldout", None) or {},
                getattr(self, "list_training", None) or {},
                bool(getattr(self, "list_no_reliable_eval", False)),
            )
        metrics = self.metrics or {}
        return (
            metrics.get("heldout") or {},
            metrics.get("training") or {},
            bool(metrics.get("no_reliable_eval")),
        )

    @property
    def measured_at(self) -> str | None:
        """Return when the figures were measured (ISO 8601), from metrics or a list annotation."""
        if "metrics" in self.get_deferred_fields():
            return getattr(self, "list_measured_at", None)
        return (self.metrics or {}).get("measured_at")

    def _headline_metrics(self) -> dict:
        """Return the held-out figures when there are any, else the training ones."""
        heldout, training, _ = self._metric_parts()
        return heldout if heldout.get("labelled") else training

    @property
    def kappa(self) -> float | None:
        """Return Cohen's kappa of the headline figures (held-out when measured)."""
        return self._headline_metrics().get("kappa")

    @property
    def balanced_accuracy(self) -> float | None:
        """Return the balanced accuracy of the headline figures (held-out when measured)."""
        return self._headline_metrics().get("balanced_accuracy")

    @property
    def no_reliable_eval(self) -> bool:
        """Return whether this version judges every trace alike (no rule was found)."""
        return self._metric_parts()[2]


class Generation(BackgroundRun, WorkspaceOwned):
    """A request to write (or refine) an eval, carried out by a task on the generate queue."""

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="generations")
    # Set when this generation refines an existing version.
    parent = models.ForeignKey(
        Eval, on_delete=models.SET_NULL, null=True, blank=True, related_name="refinements"
    )
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    model = models.CharField(max_length=100, blank=True)
    stage = models.CharField(max_length=200, blank=True)  # what it is doing now, for the UI
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    # Generation's side-by-side of code, judge and hybrid: [{"eval_id", "kind", "model",
    # "kappa", "cost_per_1k", "latency_ms", "recommended"}, ...] (empty when only code was made).
    comparison = models.JSONField(default=list, blank=True)
    result = models.ForeignKey(
        Eval, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = GenerationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Generation {self.pk} for {self.eval_set_id} ({self.status})"


class EvalRun(BackgroundRun, WorkspaceOwned):
    """One execution of an eval version over a set of traces in the sandbox."""

    class Trigger(models.TextChoices):
        GENERATION = "generation", "After generation"
        MANUAL = "manual", "Tested again"
        AUTOMATIC = "automatic", "New traces"
        API = "api", "API"

    eval = models.ForeignKey(Eval, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trace_ids = models.JSONField(default=list, blank=True)  # the traces it covers, in order
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # A batch run of sent traces (POST /api/v1/evals/<id>/run with "traces"): the traces as
    # sent, never stored as Trace rows, and their verdicts in the same order once judged.
    inputs = models.JSONField(null=True, blank=True)
    results = models.JSONField(null=True, blank=True)
    # judge()/llm() spend: provider calls made, answers from the cache, tokens, dollars.
    judge_calls = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # Provider calls to a model with no known price (counted in judge_calls, not in
    # cost_usd: what they cost is unknown, not nothing) and the model they went to.
    unpriced_calls = models.PositiveIntegerField(default=0)
    judge_model = models.CharField(max_length=100, blank=True)

    objects = EvalRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Run {self.pk} of {self.eval_id} ({self.status})"

    @property
    def cost_per_thousand(self):
        """Return what this run's judge calls cost per 1,000 traces judged (None: none yet,
        or some calls went to a model with no price, so the figure would understate it)."""
        if self.unpriced_calls:
            return None
        return self.cost_usd * 1000 / self.done if self.done else None

    @property
    def unpriced_note(self) -> str:
        """Return "unknown for N calls (no price for <model>)", or "" when all are priced."""
        return unpriced_note(self.unpriced_calls, [self.judge_model])

    @property
    def is_background(self) -> bool:
        """Tell whether no one waits on a page for this run (evals.queue.BACKGROUND)."""
        return self.trigger in (self.Trigger.AUTOMATIC, self.Trigger.API)


class EvalRunChunk(BackgroundRun, WorkspaceOwned):
    """A slice of a large eval run, carried out by its own task on any worker.

    A run over more traces than ``IOFOLD_EVAL_CHUNK_TRACES`` is split into chunks when it
    starts; workers claim chunks like any background run (a dead worker's chunk is taken
    over) and the last chunk to finish finishes the run. A queued chunk's ``heartbeat_at``
    says when it was last sent to the queue; one never sent waits for its turn
    (``evals.execution.runs.dispatch_chunks``).
    """

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trace_ids = models.JSONField(default=list, blank=True)
    # Traces this chunk sent to the sandbox and recorded, over all its attempts: equal to
    # its length when no trace was judged twice.
    judged = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    objects = EvalRunChunkQuerySet.as_manager()

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="evals_evalrunchunk_one_index")
        ]

    def __str__(self) -> str:
        return f"Chunk {self.index} of run {self.run_id} ({self.status})"


class EvalExecution(WorkspaceOwned):
    """An eval version's verdict on one trace; re-running replaces it (code is immutable)."""

    # The workspace and the eval are the run's (the one writer, ``runs._upsert``, refuses
    # a run of another eval), and the run's own foreign keys hold those rows: the database
    # checks the run and the trace of every verdict written, not two more names of the same
    # rows (a look-up per verdict at commit each: together a quarter of the write's
    # PostgreSQL CPU). Deletes still cascade here through Django's collector, which every
    # delete of an eval or a workspace goes through; a verdict whose run was deleted
    # (SET_NULL) keeps its eval by that cascade alone. docs/sandbox.md has the measurements.
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, db_constraint=False)
    # No index of their own: the unique (eval, trace) and the (trace, eval) index lead with
    # them, and every verdict written pays for each index (a run writes thousands a second).
    eval = models.ForeignKey(
        Eval,
        on_delete=models.CASCADE,
        related_name="executions",
        db_index=False,
        db_constraint=False,
    )
    run = models.ForeignKey(
        EvalRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="executions"
    )
    trace = models.ForeignKey(
        Trace, on_delete=models.CASCADE, related_name="executions", db_index=False
    )
    passed = models.BooleanField(null=True)  # None: the eval errored on this trace
    reason = models.TextField(blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0)
    output = models.TextField(blank=True)
    # What this verdict's judge()/llm() calls cost (cache hits cost nothing).
    judge_calls = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # Of judge_calls, those to a model with no known price (their cost is unknown).
    unpriced_calls = models.PositiveIntegerField(default=0)
    # Scores back to Langfuse (continuous evaluation).
    score_pushed_at = models.DateTimeField(null=True, blank=True)
    score_error = models.TextField(blank=True)

    objects = EvalExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["eval", "trace"], name="evals_execution_one_per_trace")
        ]
        indexes = [
            models.Index(fields=["trace", "eval"], name="exec_trace_eval_idx"),
            # The comparison matrix's cache stamp reads each version's newest verdict.
            models.Index(fields=["eval", "updated_at"], name="exec_eval_updated_idx"),
            # The matrix reads every verdict of the shown versions as 64-id words
            # (trace >> 6): an index-only scan that hands them over already grouped by
            # word, so PostgreSQL folds each word as it reads rather than hashing them
            # (PostgreSQL; elsewhere a plain index on the key).
            models.Index(
                F("eval"),
                F("passed"),
                F("trace").bitrightshift(6),
                include=["trace", "workspace"],
                name="exec_eval_verdict_word_idx",
            ),
            # The operations dashboard's newest failures of the workspace: read from the
            # index's head, not by sorting every verdict. Failures only, so the passing
            # verdicts a run writes by the thousand do not pay for it.
            models.Index(
                fields=["workspace", "-created_at", "-id"],
                condition=models.Q(passed=False),
                name="exec_ws_failures_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.eval_id} on {self.trace_id}: {self.passed}"


class VerdictDayQuerySet(WorkspaceQuerySet):
    pass


class VerdictDay(WorkspaceOwned):
    """How many verdicts of one eval version were first written on one day (UTC), by
    outcome: what the operations dashboard's pass rate reads instead of every verdict.

    Kept by the database itself: triggers on the verdicts' table (migration
    0023_verdict_days) add each statement's inserted, changed and deleted verdicts, so a
    re-run (which keeps a verdict's day and changes its outcome), a deleted trace or eval
    and a workspace import all count, whichever code wrote them. PostgreSQL adds a whole
    statement's rows with one upsert; SQLite, for development, row by row.
    """

    # No index of its own: the unique (eval, day) leads with it.
    eval = models.ForeignKey(
        Eval, on_delete=models.CASCADE, related_name="verdict_days", db_index=False
    )
    day = models.DateField()
    passed = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    errored = models.IntegerField(default=0)  # the eval errored (passed is None)

    objects = VerdictDayQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["eval", "day"], name="evals_verdictday_one")]

    def __str__(self) -> str:
        return f"{self.eval_id} on {self.day}: {self.passed}/{self.failed}/{self.errored}"


class VerdictSpendDayQuerySet(WorkspaceQuerySet):
    pass


class VerdictSpendDay(WorkspaceOwned):
    """What one eval version's verdicts last written on one day (UTC) cost: how many,
    their judge calls, dollars and unpriced calls. The operations dashboard's month of
    spend is the sum of the month's days, not a read of every verdict written this month.

    Keyed by the day of the verdict's ``updated_at``, as the spend always counted: a
    re-run moves its verdict's (new) cost to the re-run's day. Kept by triggers on the
    verdicts' table (migration 0024_verdict_spend_days), like ``VerdictDay``.
    """

    eval = models.ForeignKey(
        Eval, on_delete=models.CASCADE, related_name="spend_days", db_index=False
    )
    day = models.DateField()
    verdicts = models.BigIntegerField(default=0)
    judge_calls = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    unpriced_calls = models.BigIntegerField(default=0)

    objects = VerdictSpendDayQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["eval", "day"], name="evals_verdictspendday_one")
        ]
        indexes = [models.Index(fields=["workspace", "day"], name="verdictspendday_ws_day_idx")]

    def __str__(self) -> str:
        return f"{self.eval_id} on {self.day}: {self.verdicts} verdicts, ${self.cost_usd}"


class JudgeResponseQuerySet(WorkspaceQuerySet):
    pass


class JudgeResponse(WorkspaceOwned):
    """A provider's answer to one judge prompt, so a re-run asks nothing twice.

    `key` is a hash of the provider, base URL, model and the full prompt; temperature is 0,
    so the same prompt to the same model is taken to have the same answer.
    """

    key = models.CharField(max_length=64)
    model = models.CharField(max_length=100)
    text = models.TextField()
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)

    objects = JudgeResponseQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "key"], name="evals_judgeresponse_one")
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.key[:12]}"


class JudgeSpendMonthQuerySet(WorkspaceQuerySet):
    pass


class JudgeSpendMonth(WorkspaceOwned):
    """The workspace's judge spend this month, kept as calls are made: the row every run's
    calls reserve against (locked), so concurrent runs never spend past the monthly budget
    between them (evals.judging.ledger)."""

    month = models.DateField()
    # What the provider reported for calls made this month.
    spent_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    # The most the calls in flight can cost; ignored after `held_until`, when every call
    # reserved before it has timed out (its process died before settling).
    held_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    held_until = models.DateTimeField(null=True, blank=True)

    objects = JudgeSpendMonthQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace"], name="evals_judgespendmonth_one")
        ]

    def __str__(self) -> str:
        return f"{self.workspace} {self.month:%Y-%m}: ${self.spent_usd}"


class JudgeTemplateQuerySet(WorkspaceQuerySet):
    pass


class JudgeTemplate(WorkspaceOwned):
    """How an eval set's judge asks: a criterion's question, what it reads, how many
    examples it shows. Starts from evals.judging.templates.CRITERIA; editable per set."""

    eval_set = models.OneToOneField(
        EvalSet, on_delete=models.CASCADE, related_name="judge_template"
    )
    criterion = models.CharField(max_length=40)
    question = models.TextField()
    material = models.CharField(max_length=20, default="conversation")
    shots = models.PositiveSmallIntegerField(default=3)

    objects = JudgeTemplateQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.criterion} judge for {self.eval_set_id}"


# --- refinement that runs itself (issue 20) --------------------------------------------------


class AutomationSettingsQuerySet(WorkspaceQuerySet):
    pass


class AutomationSettings(WorkspaceOwned):
    """What iofold may do by itself for a workspace's evals, and where it says so."""

    auto_refine = models.BooleanField(
        default=False, help_text="Refine an active eval when it drifts or contradicts new labels."
    )
    # The budget: automatic refinements per rolling 30 days, across the workspace.
    monthly_refinements = models.PositiveSmallIntegerField(default=4)
    auto_promote = models.BooleanField(
        default=False,
        help_text="Promote a refined version when it beats the active one beyond noise.",
    )
    webhook_url = models.URLField(blank=True)
    # Signs each notification (HMAC-SHA256), so the receiver knows it came from iofold.
    webhook_secret = EncryptedTextField(blank=True)

    objects = AutomationSettingsQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "automation settings"
        constraints = [models.UniqueConstraint(fields=["workspace"], name="evals_automation_one")]

    def __str__(self) -> str:
        return f"Automation of {self.workspace}"


class EvalSetAutomationQuerySet(WorkspaceQuerySet):
    pass


class EvalSetAutomation(WorkspaceOwned):
    """Per eval set: how many new labels must contradict the active eval before a refinement."""

    eval_set = models.OneToOneField(EvalSet, on_delete=models.CASCADE, related_name="automation")
    contradiction_threshold = models.PositiveSmallIntegerField(default=10)

    objects = EvalSetAutomationQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Automation of {self.eval_set_id}"


class AutoRefinementQuerySet(WorkspaceQuerySet):
    def unfinished(self):
        return self.filter(status=AutoRefinement.Status.REFINING)


class AutoRefinement(WorkspaceOwned):
    """One refinement iofold started by itself, and what became of it."""

    class Trigger(models.TextChoices):
        DRIFT = "drift", "Drift"
        CONTRADICTIONS = "contradictions", "New labels contradict it"

    class Status(models.TextChoices):
        REFINING = "refining", "Refining"
        SHADOW = "shadow", "In shadow"
        PROMOTED = "promoted", "Promoted"
        FAILED = "failed", "Failed"

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="+")
    parent = models.ForeignKey(Eval, on_delete=models.CASCADE, related_name="+")
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REFINING)
    generation = models.ForeignKey(
        Generation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    candidate = models.ForeignKey(
        Eval, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # {"before": {...}, "after": {...}, "paired": {...} | None}
    comparison = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    webhook_status = models.CharField(max_length=200, blank=True)

    objects = AutoRefinementQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Automatic refinement of {self.parent_id} ({self.status})"


# --- the continuous evaluation's circuit breaker ------------------------------------------


class ContinuousPauseQuerySet(WorkspaceQuerySet):
    pass


class ContinuousPause(WorkspaceOwned):
    """An eval set whose continuous evaluation is paused: its active version timed out or
    errored on most of its recent new traces (``evals.execution.breaker``).

    While it exists no automatic run of the set goes to the sandbox: they wait, queued,
    and run when a member resumes or a new version is activated (which delete it).
    """

    eval_set = models.OneToOneField(
        EvalSet, on_delete=models.CASCADE, related_name="continuous_pause"
    )
    # The version whose verdicts tripped it.
    eval = models.ForeignKey(Eval, on_delete=models.CASCADE, related_name="+")
    failures = models.PositiveIntegerField()
    timeouts = models.PositiveIntegerField()
    window = models.PositiveIntegerField()
    reason = models.TextField()
    # A few of the traces it failed on, for the page's links.
    example_trace_ids = models.JSONField(default=list, blank=True)

    objects = ContinuousPauseQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Continuous evaluation of {self.eval_set_id} paused"


# --- collaboration (issue 20) ----------------------------------------------------------------


class CommentQuerySet(WorkspaceQuerySet):
    pass


class Comment(WorkspaceOwned):
    """A note by a member on an eval version or on a trace; @mentions notify by email."""

    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    eval = models.ForeignKey(
        Eval, on_delete=models.CASCADE, null=True, blank=True, related_name="comments"
    )
    trace = models.ForeignKey(
        Trace, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    body = models.TextField()
    # Ids of the members mentioned (and emailed) when it was posted.
    mentioned = models.JSONField(default=list, blank=True)

    objects = CommentQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(eval__isnull=False, trace__isnull=True)
                | models.Q(eval__isnull=True, trace__isnull=False),
                name="evals_comment_one_target",
            )
        ]

    def __str__(self) -> str:
        return f"Comment {self.pk} by {self.author_id}"


class ActivityQuerySet(WorkspaceQuerySet):
    pass


class Activity(WorkspaceOwned):
    """Something that changed an eval set's evals: who (None: iofold itself), what and why.

    Labels and generations are read from their own rows; this holds the rest.
    """

    class Verb(models.TextChoices):
        ACTIVATED = "activated", "activated"
        ROLLED_BACK = "rolled_back", "rolled back to"
        SHADOWED = "shadowed", "put in shadow"
        UNSHADOWED = "unshadowed", "took out of shadow"
        PROMOTED = "promoted", "promoted"
        ARCHIVED = "archived", "archived"
        COMMENTED = "commented", "commented on"
        PAUSED = "paused", "paused continuous evaluation of"
        RESUMED = "resumed", "resumed continuous evaluation of"

    eval_set = models.ForeignKey(EvalSet, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    verb = models.CharField(max_length=20, choices=Verb.choices)
    eval = models.ForeignKey(
        Eval, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True)

    objects = ActivityQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["eval_set", "created_at"], name="activity_set_time_idx")]

    def __str__(self) -> str:
        return f"{self.verb} {self.eval_id}"


# --- the gallery (issue 20) ------------------------------------------------------------------


class EvalTemplate(models.Model):
    """A shared eval any workspace can start from: built in, or published by a workspace.

    Holds no trace and no label: only code, criteria and aggregate figures (versions).
    """

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    builtin = models.BooleanField(default=False)
    # None for built-ins. Deleting the workspace keeps what it shared.
    publisher = models.ForeignKey(
        "workspaces.Workspace", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-builtin", "name"]

    def __str__(self) -> str:
        return self.name


class EvalTemplateVersion(models.Model):
    template = models.ForeignKey(EvalTemplate, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    code = models.TextField()
    criteria = models.TextField(blank=True)
    # Aggregate figures only (accuracy, kappa, counts); never trace ids or labels.
    metrics = models.JSONField(default=dict, blank=True)
    # For built-ins: the data and the command the figures come from.
    measured_on = models.CharField(max_length=300, blank=True)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "version"], name="evals_template_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template} v{self.version}"

    @property
    def figures(self) -> dict:
        """Return the figures to show: held-out when measured so, else training; ``{}`` when
        the version was published before it was measured."""
        metrics = self.metrics or {}
        for part in ("heldout", "training"):
            figures = metrics.get(part)
            if isinstance(figures, dict) and figures.get("accuracy") is not None:
                return figures
        return {}


class ConversationJudgement(WorkspaceOwned):
    """One automatic verdict on a complete conversation, kept for its history.

    The conversation's ``EvalExecution`` (on its anchor turn) holds the latest verdict, as
    for traces; each time the conversation completes (again, after resuming or after its
    turns changed) with content this eval has not judged, the verdict of that completion is
    added here. The row is written when the run is started (it claims the completion:
    two workers never judge one twice) and gets its verdict when the run has judged it.
    """

    class Cause(models.TextChoices):
        FIRST = "first", "first judgement"
        RESUMED = "resumed", "the user came back: a later turn"
        LATE_TURNS = "late_turns", "earlier turns arrived after it was judged"
        CHANGED = "changed", "its turns changed after it was judged"
        TURNS_LEFT = "turns_left", "turns moved to another conversation"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="judgements"
    )
    eval = models.ForeignKey(Eval, on_delete=models.CASCADE, related_name="+")
    # The run judging it; its verdict below is empty until that run has judged it.
    run = models.ForeignKey(
        "EvalRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Which completion of the conversation this judges (Conversation.completion_count).
    completion = models.PositiveIntegerField()
    turn_count = models.PositiveIntegerField()
    # When its latest turn began, and a digest of what the eval receives
    # (traces.conversations.content_fingerprint): a completion with the content of the
    # eval's previous judgement is not judged again.
    last_turn_at = models.DateTimeField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    cause = models.CharField(max_length=20, choices=Cause.choices, default=Cause.FIRST)
    passed = models.BooleanField(null=True)
    reason = models.TextField(blank=True)
    error = models.TextField(blank=True)

    objects = WorkspaceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "eval", "completion"],
                name="evals_judgement_one_per_completion",
            )
        ]

    def __str__(self) -> str:
        return f"{self.eval_id} on conversation {self.conversation_id} #{self.completion}"

    @property
    def is_pending(self) -> bool:
        """Claimed by a run that has not judged it yet."""
        return self.passed is None and not self.error and not self.reason

    @property
    def status(self) -> str:
        if self.is_pending:
            return "pending"
        if self.passed is None:
            return "error"
        return "passed" if self.passed else "failed"
