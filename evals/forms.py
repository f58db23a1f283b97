from django import forms

from evals.judging.templates import CRITERIA, MAX_QUESTION_CHARS
from evals.models import Provider
from iofold.lib import outbound
from traces.vocabulary import unit_noun


def _connectable(url: str) -> str:
    """Return the URL (or nothing), or raise ``ValidationError`` if iofold may not connect
    to it (``outbound.check_url``)."""
    if url:
        try:
            outbound.check_url(url)
        except outbound.OutboundURLRefused as exc:
            raise forms.ValidationError(exc.message) from None
    return url


class ProviderSettingsForm(forms.Form):
    provider = forms.ChoiceField(
        choices=Provider.choices,
        help_text="Offline needs no key and no network; OpenAI-compatible and Anthropic "
        "write the eval with a model.",
    )
    model = forms.CharField(
        required=False,
        max_length=100,
        help_text="Leave empty for the default (claude-sonnet-5-5 or gpt-4.1).",
    )
    base_url = forms.URLField(
        required=False,
        label="Base URL",
        help_text="Only for OpenAI-compatible servers other than api.openai.com.",
    )
    api_key = forms.CharField(
        required=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted. Leave empty to keep the saved key.",
    )
    clear_key = forms.BooleanField(required=False, label="Remove the saved key")
    monthly_budget_usd = forms.DecimalField(
        required=False,
        min_value=0,
        max_digits=10,
        decimal_places=2,
        label="Monthly judge budget (USD)",
        help_text="Runs of evals that call an LLM judge (automatic or manual) and "
        "generation's judge measurements stop before this month's spend (the calendar month "
        "in UTC) would pass it. "
        "Empty: no limit.",
    )

    def clean_base_url(self) -> str:
        # Checked here too (the service is the authority) to show it on the field.
        return _connectable(self.cleaned_data["base_url"])


class JudgeTemplateForm(forms.Form):
    criterion = forms.ChoiceField(
        choices=[(c.key, c.title) for c in CRITERIA.values()],
        help_text="What the judge checks; its question is the starting point below.",
    )
    question = forms.CharField(
        required=False,
        max_length=MAX_QUESTION_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The question the judge answers yes or no. Empty: the criterion's own.",
    )
    material = forms.ChoiceField(
        choices=[
            ("reply", "The reply only"),
            ("conversation", "The user's input and the reply"),
            ("tool_results", "Input, tool results and the reply"),
        ],
        help_text="What of each {unit} the judge reads.",
    )
    shots = forms.IntegerField(
        min_value=0,
        max_value=10,
        label="Examples shown",
        help_text="Labelled examples most like the {unit}, picked from the set's labels.",
    )

    def __init__(self, *args, unit: str = "trace", **kwargs):
        super().__init__(*args, **kwargs)
        # A conversation set's judge reads conversations: say so where the help names them.
        noun = unit_noun(unit)
        for name in ("material", "shots"):
            field = self.fields[name]
            field.help_text = field.help_text.format(unit=noun)


class AutomationForm(forms.Form):
    auto_refine = forms.BooleanField(
        required=False,
        label="Refine evals by themselves",
        help_text="When an active eval drifts, or new labels contradict it, write a refined "
        "version, measure it and run it in shadow.",
    )
    monthly_refinements = forms.IntegerField(
        min_value=0,
        max_value=100,
        initial=4,
        label="Budget: automatic refinements per 30 days",
    )
    auto_promote = forms.BooleanField(
        required=False,
        label="Promote a refined version by itself when it wins beyond noise",
    )
    webhook_url = forms.URLField(
        required=False,
        label="Notification webhook",
        help_text="iofold POSTs each automatic refinement here, signed like its incoming webhook.",
    )
    new_secret = forms.BooleanField(required=False, label="Make a new signing secret")

    def clean_webhook_url(self) -> str:
        return _connectable(self.cleaned_data["webhook_url"])


class ThresholdForm(forms.Form):
    contradiction_threshold = forms.IntegerField(min_value=1, max_value=10000)
