from urllib.parse import parse_qsl, urlencode

from django import forms

from traces.constants import MAX_CRITERIA_CHARS
from traces.filters import TraceFilters
from traces.models import EvalSet, Feedback


def _read_saved_filter(raw: str) -> tuple[TraceFilters, list[str]]:
    """Read a filter typed as a query string; the problems name what did not read."""
    data = dict(parse_qsl(str(raw).strip().lstrip("?")))
    filters = TraceFilters.from_data(data)
    return filters, [f"{key}: {why}" for key, why in filters.unread(data).items()]


class EvalSetForm(forms.Form):
    name = forms.CharField(max_length=200)
    criteria = forms.CharField(
        max_length=MAX_CRITERIA_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="In plain words, what makes a trace good? The eval is written from this "
        f"and from your labels (at most {MAX_CRITERIA_CHARS:,} characters).",
    )
    target_labels = forms.IntegerField(
        min_value=1,
        max_value=10_000,
        initial=10,
        help_text="How many traces to label before generating an eval. Ten is enough to start.",
    )
    source_kind = forms.ChoiceField(
        choices=EvalSet.SourceKind.choices,
        initial=EvalSet.SourceKind.MANUAL,
        widget=forms.RadioSelect,
        label="Traces to review",
    )
    # Optional in a POST: left out, a new set judges traces and an edit keeps its unit.
    unit = forms.ChoiceField(
        required=False,
        choices=EvalSet.Unit.choices,
        initial=EvalSet.Unit.TRACE,
        widget=forms.RadioSelect,
        label="What is judged",
        help_text="A conversation is every trace sharing a session, thread or conversation "
        "id, reviewed and judged as a whole once it is complete.",
    )
    conversation_idle_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        initial=30,
        label="A conversation is complete after (minutes without a new turn)",
        help_text="Or at once when its last turn carries an end marker.",
    )
    saved_filter = forms.CharField(
        required=False,
        label="Trace filter",
        help_text="The trace list's filter, e.g. tag=checkout&has_error=false. New traces "
        "that match join the review queue.",
    )
    score_to_langfuse = forms.BooleanField(
        required=False,
        label="Send eval verdicts back to the traces' sources",
        help_text="As scores to Langfuse and feedback to LangSmith. Sources that take no "
        "verdicts (OpenAI, OpenTelemetry, uploads) keep them in iofold only.",
    )
    trace_ids = forms.CharField(required=False, widget=forms.HiddenInput)

    def saved_filter_problems(self) -> list[str]:
        """What does not read in the filter: a submitted form's errors, or, on the first
        render, those of a pre-filled filter (the trace list's "Save filter as eval set"),
        named before the form is submitted rather than only after."""
        if self.is_bound:
            return list(self.errors.get("saved_filter", []))
        raw = self.initial.get("saved_filter")
        return _read_saved_filter(raw)[1] if raw else []

    def clean_unit(self) -> str | None:
        return self.cleaned_data["unit"] or None

    def clean_saved_filter(self) -> dict:
        filters, problems = _read_saved_filter(self.cleaned_data["saved_filter"])
        # Dropped, a filter would queue traces the set was not meant to review.
        if problems:
            raise forms.ValidationError(problems)
        return filters.to_data()

    def clean_trace_ids(self) -> list[int]:
        raw = self.cleaned_data["trace_ids"]
        try:
            return [int(pk) for pk in raw.split(",") if pk.strip()]
        except ValueError:
            raise forms.ValidationError("Invalid trace selection.") from None

    @staticmethod
    def initial_for(eval_set: EvalSet) -> dict:
        return {
            "name": eval_set.name,
            "criteria": eval_set.criteria,
            "target_labels": eval_set.target_labels,
            "source_kind": eval_set.source_kind,
            "unit": eval_set.unit,
            "conversation_idle_minutes": eval_set.conversation_idle_minutes,
            "saved_filter": urlencode(eval_set.saved_filter),
            "score_to_langfuse": eval_set.score_to_langfuse,
        }


NOTE_MAX_LENGTH = 5000


class FeedbackForm(forms.Form):
    rating = forms.ChoiceField(choices=Feedback.Rating.choices)
    note = forms.CharField(required=False, max_length=NOTE_MAX_LENGTH)

    def problem(self) -> str:
        """What to tell the reviewer about an invalid form: a missing rating, or the note's
        fault (too long, a NUL), which "Pick a rating." misnamed."""
        if "rating" in self.errors:
            return "Pick a rating."
        return f"The note was not saved: {self.errors['note'][0]}"

    def draft_note(self) -> str:
        """The note as typed, to give back in the note box (without NULs, which it cannot hold)."""
        return self.data.get("note", "").replace("\x00", "")


class AddToEvalSetForm(forms.Form):
    eval_set = forms.IntegerField()
    trace = forms.TypedMultipleChoiceField(coerce=int, choices=[], required=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Ids are validated against the workspace by the service, not against a choice list.
        self.fields["trace"].valid_value = lambda value: str(value).isdigit()


class SelectedTracesForm(forms.Form):
    trace = forms.TypedMultipleChoiceField(coerce=int, choices=[], required=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Ids are scoped to the workspace by the service, not checked against a choice list.
        self.fields["trace"].valid_value = lambda value: str(value).isdigit()


class BulkAssignForm(AddToEvalSetForm):
    reviewer = forms.IntegerField()


class ScoreImportForm(forms.Form):
    integration = forms.TypedChoiceField(coerce=int, label="Source")
    score_name = forms.CharField(
        max_length=200,
        label="Score or feedback name",
        help_text="The name of the boolean or categorical score your team gives, e.g. correct.",
    )
    mapping = forms.CharField(
        max_length=2000,
        initial="true=good, false=bad",
        label="Which values mean what",
        help_text="value=label pairs, labels good, bad or neutral: true=good, false=bad, or "
        "for categories helpful=good, wrong=bad, unsure=neutral.",
    )

    def __init__(self, *args, sources=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["integration"].choices = [
            (i.pk, f"{i.name} ({i.get_kind_display()})") for i in sources
        ]


class AssignForm(forms.Form):
    reviewer = forms.TypedMultipleChoiceField(coerce=int, choices=[], required=True)
    agreement_target = forms.IntegerField(min_value=0, max_value=1000, initial=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Reviewers are checked against the workspace by the service, not a choice list.
        self.fields["reviewer"].valid_value = lambda value: str(value).isdigit()
