from django import forms

from integrations.constants import SYNC_INTERVAL_CHOICES
from integrations.exceptions import IntegrationError
from integrations.models import LANGFUSE_CLOUD_EU, LANGFUSE_CLOUD_US
from integrations.services import clean_host
from integrations.validators import validate_public_key, validate_secret_key

HOSTS = {"eu": LANGFUSE_CLOUD_EU, "us": LANGFUSE_CLOUD_US}


def _split(value: str) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class ConnectionForm(forms.Form):
    """Where Langfuse is and the keys to it (also used alone by "Test connection")."""

    region = forms.ChoiceField(
        choices=[
            ("eu", "Langfuse Cloud EU (cloud.langfuse.com)"),
            ("us", "Langfuse Cloud US (us.cloud.langfuse.com)"),
            ("self", "Self-hosted"),
        ],
        initial="eu",
        widget=forms.RadioSelect,
    )
    custom_host = forms.CharField(
        required=False,
        label="Self-hosted URL",
        help_text="Your Langfuse base URL, e.g. https://langfuse.example.com (v4.59 or later).",
    )
    public_key = forms.CharField(
        max_length=200, validators=[validate_public_key], help_text="Starts with pk-lf-"
    )
    secret_key = forms.CharField(
        required=False,
        validators=[validate_secret_key],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Starts with sk-lf-. Stored encrypted; never shown again.",
    )

    def __init__(self, *args, secret_hint: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.secret_hint = secret_hint
        if secret_hint:
            self.fields["secret_key"].help_text = f"Stored: {secret_hint}. Leave empty to keep it."

    def clean(self):
        data = super().clean()
        if data.get("region") == "self" and not data.get("custom_host"):
            self.add_error("custom_host", "Enter your Langfuse URL.")
        if not self.secret_hint and not data.get("secret_key"):
            self.add_error("secret_key", "Enter the secret key.")
        return data

    @property
    def host(self) -> str:
        region = self.cleaned_data.get("region")
        return HOSTS.get(region) or self.cleaned_data.get("custom_host", "")

    @staticmethod
    def initial_for(host: str) -> dict:
        for region, url in HOSTS.items():
            if host == url:
                return {"region": region}
        return {"region": "self", "custom_host": host}


class IntegrationForm(ConnectionForm):
    name = forms.CharField(max_length=100, initial="Langfuse", help_text="E.g. “Langfuse prod”.")
    filter_names = forms.CharField(
        required=False, label="Trace names", help_text="Comma-separated; empty syncs every name."
    )
    filter_tags = forms.CharField(
        required=False, label="Tags", help_text="Comma-separated; a trace must carry all of them."
    )
    filter_environments = forms.CharField(
        required=False, label="Environments", help_text="Comma-separated, e.g. production."
    )
    since_date = forms.DateTimeField(
        required=False,
        label="Only traces since",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Empty: the last 30 days on the first sync.",
    )
    sync_interval_minutes = forms.TypedChoiceField(
        choices=[("" if v is None else v, label) for v, label in SYNC_INTERVAL_CHOICES],
        coerce=int,
        empty_value=None,
        required=False,
        label="Sync automatically",
    )

    field_order = ["name", "region", "custom_host", "public_key", "secret_key"]

    def clean(self):
        data = super().clean()
        # Saving checks the host here, as a field error. "Test connection" (ConnectionForm
        # alone) gets the same check from the service, shown as its result.
        if data.get("region") == "self" and data.get("custom_host"):
            try:
                data["custom_host"] = clean_host(data["custom_host"])
            except IntegrationError as exc:
                self.add_error("custom_host", exc.message)
        return data

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        kwargs = {
            "name": data["name"],
            "host": self.host,
            "public_key": data["public_key"],
            "secret_key": data.get("secret_key") or None,
            "filter_names": _split(data.get("filter_names")),
            "filter_tags": _split(data.get("filter_tags")),
            "filter_environments": _split(data.get("filter_environments")),
            "since_date": data.get("since_date"),
            "sync_interval_minutes": data.get("sync_interval_minutes"),
        }
        return kwargs

    @classmethod
    def initial_from(cls, integration) -> dict:
        return {
            "name": integration.name,
            "public_key": integration.public_key,
            "filter_names": ", ".join(integration.filter_names),
            "filter_tags": ", ".join(integration.filter_tags),
            "filter_environments": ", ".join(integration.filter_environments),
            "since_date": integration.since_date,
            "sync_interval_minutes": integration.sync_interval_minutes or "",
            **cls.initial_for(integration.host),
        }


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="JSON Lines: one trace per line, normalised or a Langfuse trace export."
    )
