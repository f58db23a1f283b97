from django import forms

from integrations.adapters.openai import OPENAI_API
from integrations.adapters.openai import clean_options as clean_openai_options
from integrations.constants import SYNC_INTERVAL_CHOICES
from integrations.exceptions import IntegrationError
from integrations.models import LANGFUSE_CLOUD_EU, LANGFUSE_CLOUD_US
from integrations.services import clean_host
from integrations.validators import validate_public_key, validate_secret_key

HOSTS = {"eu": LANGFUSE_CLOUD_EU, "us": LANGFUSE_CLOUD_US}


# The region choice that means "at the URL typed in ``custom_host``".
SELF_HOSTED = "self"


def region_field(*clouds: tuple[str, str], initial: str) -> forms.ChoiceField:
    """Return the choice of a cloud region, as ``(region, label)`` pairs, or self-hosted."""
    return forms.ChoiceField(
        choices=[*clouds, (SELF_HOSTED, "Self-hosted")], initial=initial, widget=forms.RadioSelect
    )


def _split(value: str) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class SourceConnectionForm(forms.Form):
    """What every kind's connection form shares: a stored secret is kept when its field is
    left empty, and a cloud region (``hosts``) or a self-hosted URL says where the source is.
    """

    kind = ""
    key_field = "secret_key"
    key_missing = "Enter the secret key."
    # Region name to cloud URL; a form without a region choice overrides ``host``.
    hosts: dict[str, str] = {}
    custom_host_missing = "Enter the URL."

    def __init__(self, *args, secret_hint: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.secret_hint = secret_hint
        if secret_hint:
            self.fields[
                self.key_field
            ].help_text = f"Stored: {secret_hint}. Leave empty to keep it."

    def add_error(self, field, error):
        super().add_error(field, error)
        if field != self.key_field:
            self.ask_key_again()

    def ask_key_again(self) -> None:
        """Say that a typed key must be typed again: it is never sent back to the browser,
        so the form's page (with an error, or a test's result) shows its field empty, and
        the next submit would fail for want of the key."""
        if self.data.get(self.add_prefix(self.key_field)):
            # The bound field (made while cleaning) is what renders, with its own help text.
            key = self[self.key_field]
            key.help_text = (
                f"Enter the {key.label.lower()} again: it is not sent back to your browser."
            )

    def clean(self):
        data = super().clean()
        if self.hosts and data.get("region") == SELF_HOSTED and not data.get("custom_host"):
            self.add_error("custom_host", self.custom_host_missing)
        if not self.secret_hint and not data.get(self.key_field):
            self.add_error(self.key_field, self.key_missing)
        return data

    @property
    def host(self) -> str:
        region = self.cleaned_data.get("region")
        return self.hosts.get(region) or self.cleaned_data.get("custom_host", "")

    @classmethod
    def initial_for(cls, host: str) -> dict:
        for region, url in cls.hosts.items():
            if host == url:
                return {"region": region}
        return {"region": SELF_HOSTED, "custom_host": host}


class ChecksHostOnSave:
    """Saving checks a self-hosted URL here, as a field error. "Test connection" (the
    connection form alone) gets the same check from the service, shown as its result."""

    def clean(self):
        data = super().clean()
        if data.get("region") == SELF_HOSTED and data.get("custom_host"):
            try:
                data["custom_host"] = clean_host(data["custom_host"], kind=self.kind)
            except IntegrationError as exc:
                self.add_error("custom_host", exc.message)
        return data


class ConnectionForm(SourceConnectionForm):
    """Where Langfuse is and the keys to it (also used alone by "Test connection").

    Every kind's connection form offers ``connection_kwargs(stored_secret)``: what
    ``services.check_connection`` needs, with a stored secret for one left empty.
    """

    kind = "langfuse"
    # Shown when the form is invalid; names what "Test connection" needs.
    missing_message = "Fill in the host, the public key and the secret key first."
    credential_fields = ("public_key", "secret_key")
    hosts = HOSTS
    custom_host_missing = "Enter your Langfuse URL."

    region = region_field(
        ("eu", "Langfuse Cloud EU (cloud.langfuse.com)"),
        ("us", "Langfuse Cloud US (us.cloud.langfuse.com)"),
        initial="eu",
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

    def connection_kwargs(self, stored_secret: str = "") -> dict:
        return {
            "kind": self.kind,
            "host": self.host,
            "public_key": self.cleaned_data["public_key"],
            "secret_key": self.cleaned_data["secret_key"] or stored_secret,
        }


class FilterFields(forms.Form):
    """The trace selection and schedule every pull source shares."""

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

    def filter_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "filter_names": _split(data.get("filter_names")),
            "filter_tags": _split(data.get("filter_tags")),
            "filter_environments": _split(data.get("filter_environments")),
            "since_date": data.get("since_date"),
            "sync_interval_minutes": data.get("sync_interval_minutes"),
        }

    @staticmethod
    def filter_initial(integration) -> dict:
        return {
            "filter_names": ", ".join(integration.filter_names),
            "filter_tags": ", ".join(integration.filter_tags),
            "filter_environments": ", ".join(integration.filter_environments),
            "since_date": integration.since_date,
            "sync_interval_minutes": integration.sync_interval_minutes or "",
        }


class IntegrationForm(ChecksHostOnSave, ConnectionForm, FilterFields):
    """Connect Langfuse: where it is, the project's keys, which traces, how often."""

    title = "Connect Langfuse"
    intro = "Use a project's API keys from Langfuse: Project settings → API keys."
    connection_form = ConnectionForm

    name = forms.CharField(max_length=100, initial="Langfuse", help_text="E.g. “Langfuse prod”.")

    field_order = ["name", "region", "custom_host", "public_key", "secret_key"]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        kwargs = {
            "name": data["name"],
            "host": self.host,
            "public_key": data["public_key"],
            "secret_key": data.get("secret_key") or None,
            **self.filter_kwargs(),
        }
        return kwargs

    @classmethod
    def initial_from(cls, integration) -> dict:
        return {
            "name": integration.name,
            "public_key": integration.public_key,
            **cls.filter_initial(integration),
            **cls.initial_for(integration.host),
        }


LANGSMITH_HOSTS = {
    "us": "https://api.smith.langchain.com",
    "eu": "https://eu.api.smith.langchain.com",
}


class LangSmithConnectionForm(SourceConnectionForm):
    """Where LangSmith is, the API key, the project and, for a workspace, its id."""

    kind = "langsmith"
    missing_message = "Fill in the API URL, the API key and the project first."
    credential_fields = ("api_key", "project", "tenant_id")
    key_field = "api_key"
    key_missing = "Enter the API key."
    hosts = LANGSMITH_HOSTS
    custom_host_missing = "Enter your LangSmith API URL."

    region = region_field(
        ("us", "LangSmith Cloud US (api.smith.langchain.com)"),
        ("eu", "LangSmith Cloud EU (eu.api.smith.langchain.com)"),
        initial="us",
    )
    custom_host = forms.CharField(
        required=False,
        label="Self-hosted API URL",
        help_text="Your LangSmith API base URL, e.g. https://langsmith.example.com/api/v1.",
    )
    api_key = forms.CharField(
        required=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="A personal access token or service key (lsv2_…). Stored encrypted; "
        "never shown again.",
    )
    project = forms.CharField(max_length=200, help_text="The tracing project to read.")
    tenant_id = forms.CharField(
        required=False,
        label="Workspace id",
        help_text="Only for a key of several workspaces: the workspace to read (a UUID).",
    )

    @property
    def options(self) -> dict:
        data = self.cleaned_data
        return {"project": data.get("project", ""), "tenant_id": data.get("tenant_id", "")}

    def connection_kwargs(self, stored_secret: str = "") -> dict:
        return {
            "kind": self.kind,
            "host": self.host,
            "public_key": "",
            "secret_key": self.cleaned_data["api_key"] or stored_secret,
            "options": self.options,
        }


class LangSmithIntegrationForm(ChecksHostOnSave, LangSmithConnectionForm, FilterFields):
    """Connect LangSmith: runs of one project, grouped into traces."""

    title = "Connect LangSmith"
    intro = "Use an API key from LangSmith: Settings → API keys."
    connection_form = LangSmithConnectionForm

    name = forms.CharField(max_length=100, initial="LangSmith", help_text="E.g. “LangSmith prod”.")

    field_order = ["name", "region", "custom_host", "api_key", "project", "tenant_id"]

    def service_kwargs(self) -> dict:
        return {
            "name": self.cleaned_data["name"],
            "host": self.host,
            "public_key": "",
            "secret_key": self.cleaned_data.get("api_key") or None,
            "options": self.options,
            **self.filter_kwargs(),
        }

    @classmethod
    def initial_from(cls, integration) -> dict:
        options = integration.options or {}
        return {
            "name": integration.name,
            "project": options.get("project", ""),
            "tenant_id": options.get("tenant_id", ""),
            **cls.initial_for(integration.host),
            **cls.filter_initial(integration),
        }


class OpenAIConnectionForm(SourceConnectionForm):
    """An OpenAI API base URL, a key and the filters of the completions listed."""

    kind = "openai"
    missing_message = "Fill in the base URL and the API key first."
    credential_fields = ("base_url", "api_key", "metadata_filter", "model_filter")
    key_field = "api_key"
    key_missing = "Enter the API key."

    base_url = forms.CharField(
        max_length=300,
        initial=OPENAI_API,
        label="API base URL",
        help_text="https://api.openai.com/v1, or an OpenAI-compatible server's /v1 URL.",
    )
    api_key = forms.CharField(
        required=False,
        label="API key",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Needs read access to Chat Completions. Stored encrypted; never shown again.",
    )
    metadata_filter = forms.CharField(
        required=False,
        label="Metadata filter",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="key=value pairs, one a line or comma-separated; only completions stored "
        "with all of them are synced.",
    )
    model_filter = forms.CharField(
        required=False, max_length=200, label="Model", help_text="Empty syncs every model."
    )

    def clean(self):
        data = super().clean()
        try:
            data["options"] = clean_openai_options(
                {"metadata": data.get("metadata_filter") or "", "model": data.get("model_filter")}
            )
        except ValueError as exc:
            self.add_error("metadata_filter", str(exc))
        return data

    @property
    def host(self) -> str:
        return self.cleaned_data.get("base_url", "")

    def connection_kwargs(self, stored_secret: str = "") -> dict:
        return {
            "kind": self.kind,
            "host": self.host,
            "public_key": "",
            "secret_key": self.cleaned_data["api_key"] or stored_secret,
            "options": self.cleaned_data.get("options") or {},
        }


class OpenAIIntegrationForm(OpenAIConnectionForm):
    """Connect OpenAI: chat completions stored with store=True."""

    title = "Connect OpenAI"
    intro = (
        "Syncs chat completions stored with store=True (Chat Completions → Logs in the "
        "OpenAI dashboard). For the Agents SDK's traces, see OpenAI Agents SDK on the "
        "integrations page."
    )
    connection_form = OpenAIConnectionForm

    name = forms.CharField(max_length=100, initial="OpenAI", help_text="E.g. “OpenAI prod”.")
    since_date = FilterFields.base_fields["since_date"]
    sync_interval_minutes = FilterFields.base_fields["sync_interval_minutes"]

    field_order = ["name", "base_url", "api_key", "metadata_filter", "model_filter"]

    def clean(self):
        data = super().clean()
        if data.get("base_url"):
            try:
                data["base_url"] = clean_host(data["base_url"], kind=self.kind)
            except IntegrationError as exc:
                self.add_error("base_url", exc.message)
        return data

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "host": self.host,
            "public_key": "",
            "secret_key": data.get("api_key") or None,
            "options": data.get("options") or {},
            "since_date": data.get("since_date"),
            "sync_interval_minutes": data.get("sync_interval_minutes"),
        }

    @classmethod
    def initial_from(cls, integration) -> dict:
        options = integration.options or {}
        return {
            "name": integration.name,
            "base_url": integration.host,
            "metadata_filter": "\n".join(
                f"{k}={v}" for k, v in (options.get("metadata") or {}).items()
            ),
            "model_filter": options.get("model", ""),
            "since_date": integration.since_date,
            "sync_interval_minutes": integration.sync_interval_minutes or "",
        }


# The connect form of each kind a user can connect from the UI, in the order offered.
# A new kind adds its form class here (with ``title``, ``intro``, ``connection_form``,
# ``service_kwargs()`` and ``initial_from()``).
INTEGRATION_FORMS: dict[str, type[forms.Form]] = {
    "langfuse": IntegrationForm,
    "langsmith": LangSmithIntegrationForm,
    "openai": OpenAIIntegrationForm,
}


def integration_form_for(kind: str) -> type[forms.Form] | None:
    """Return the connect form of ``kind``, or None when the UI cannot connect it."""
    return INTEGRATION_FORMS.get(kind)


class UploadForm(forms.Form):
    file = forms.FileField(
        help_text="JSON Lines: one trace per line, normalised or a Langfuse trace export."
    )


class ResponseKeyForm(forms.Form):
    """The OpenAI key an Agents SDK source reads its response spans' content with."""

    base_url = forms.CharField(
        max_length=300,
        initial=OPENAI_API,
        label="API base URL",
        help_text="https://api.openai.com/v1, or an OpenAI-compatible server's /v1 URL.",
    )
    api_key = forms.CharField(
        label="OpenAI API key",
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Of the project the agents run in; needs read access to Responses. Stored "
        "encrypted; never shown again.",
    )
